"""The one bounded ``.npz`` reader: a small hostile file must not cost gigabytes.

``np.load`` trusts a file: a 2 MB ``.npz`` can hold a member that inflates to gigabytes, or whose
``.npy`` header declares any shape. :func:`read_npz` reads only the members its caller expects
(others are skipped without being decompressed), checks each one's declared dtype and shape from
its ``.npy`` header *before* decompressing any data, bounds the total, and reads the data straight
into its array, chunk by chunk. Every refusal is an :class:`NpzFileError` whose ``str()`` is one
line naming the file and what to do.
"""

from __future__ import annotations

import math
import os
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

#: More members than any ganbrush file holds (a PTI inversion of a 1024 px generator has ~300),
#: and a larger zip directory than they need: ``zipfile`` parses the whole directory on opening.
MAX_MEMBERS = 4096
MAX_DIRECTORY_BYTES = 4 << 20
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF


class NpzFileError(ValueError):
    """An ``.npz`` that cannot be used (unreadable, truncated, too large, unexpected content)."""


@dataclass(frozen=True)
class Member:
    """What one expected member may be: dtype ``kinds`` (``numpy.dtype.kind`` letters: ``"f"``
    float, ``"iu"`` integers, ``"U"`` text), ``ndim`` (``None``: any), at most ``max_bytes``
    (``None``: only the file's total bound), and whether the file must have it."""

    kinds: str
    ndim: int | None = None
    max_bytes: int | None = None
    required: bool = False


def _directory_problem(path: Path) -> str | None:
    """Why the zip directory is too large to parse, judged from the end record in the file's tail
    (found as ``zipfile`` finds it); ``None`` if it is fine or absent (then zipfile says "not a zip")."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - _EOCD_SIZE - _MAX_COMMENT))
        tail = f.read()
    at = len(tail) - _EOCD_SIZE if tail[-_EOCD_SIZE:].startswith(_EOCD) else tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        return None
    if at >= 20 and tail[at - 20 : at - 16] == _ZIP64_LOCATOR:
        return "it is a ZIP64 archive (over 4 GiB or 65535 members), larger than any ganbrush file"
    count, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    if count > MAX_MEMBERS:
        return f"it lists {count} members, more than the {MAX_MEMBERS} allowed"
    if directory_bytes > MAX_DIRECTORY_BYTES:
        return f"its zip directory is {_size(directory_bytes)}, over the limit of {_size(MAX_DIRECTORY_BYTES)}"
    return None


def _read_header(fp: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The ``.npy`` header of a member stream: ``(shape, fortran_order, dtype)``; nothing after it is read."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    # 3.0 only exists for non-Latin-1 field names of structured dtypes, which no ganbrush file has.
    raise ValueError(f"member {name!r} has .npy format {version[0]}.{version[1]}, not 1.0 or 2.0")


def _fill(fp: IO[bytes], array: np.ndarray) -> bool:
    """Read ``array.nbytes`` bytes from ``fp`` into ``array`` in bounded chunks; False if short."""
    view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    done = 0
    while done < len(view):
        n = fp.readinto(view[done : done + (1 << 24)])
        if not n:
            return False
        done += n
    return True


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _spec_for(name: str, expected: Mapping[str, Member]) -> Member | None:
    return next((spec for pattern, spec in expected.items() if re.fullmatch(pattern, name)), None)


def read_npz(path: str | os.PathLike, expected: Mapping[str, Member], max_total_bytes: int, *,
             what: str = "file", hint: str = "") -> dict[str, np.ndarray]:
    """Read the members of the ``.npz`` at ``path`` that ``expected`` names, with bounded memory.

    ``expected`` maps a member name, or a regular expression matched against whole names (e.g.
    ``r"noise_\\d+"``), to its :class:`Member` rules; names are those of ``np.savez`` (no ``.npy``).
    Other members are skipped unread. Each member's dtype and shape are checked from its header
    before its data is decompressed; object and structured dtypes are always refused (no pickles);
    the arrays together may not exceed ``max_total_bytes``. ``what`` names the kind of file and
    ``hint`` says what to do, both in the one-line :class:`NpzFileError` messages.
    """
    path = Path(path)
    todo = f"; {hint}" if hint else ""

    def fail(reason: str) -> NpzFileError:
        return NpzFileError(f"{path}: {reason}{todo}")

    if not path.is_file():
        raise fail(f"no such {what}")
    try:
        problem = _directory_problem(path)
    except OSError as e:
        raise fail(f"cannot read it ({e.strerror or type(e).__name__})") from None
    if problem:
        raise fail(f"not a usable {what}: {problem}")
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise fail(f"not a usable {what}: it holds {len(infos)} members, more than the {MAX_MEMBERS} allowed")
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                spec = _spec_for(name, expected)
                if spec is None or name in arrays:
                    continue  # unknown (or repeated) members are never decompressed
                with zf.open(info) as fp:
                    try:
                        shape, fortran, dtype = _read_header(fp, name)
                    except ValueError as e:
                        raise fail(f"not a usable {what}: bad array header of {name!r} ({e})") from None
                    if dtype.hasobject or dtype.names is not None or dtype.kind not in spec.kinds:
                        raise fail(f"not a usable {what}: {name!r} has dtype {dtype}, expected kind "
                                   f"{'/'.join(spec.kinds)}")
                    if spec.ndim is not None and len(shape) != spec.ndim:
                        raise fail(f"not a usable {what}: {name!r} has shape {shape}, expected {spec.ndim} "
                                   "dimensions")
                    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
                    if spec.max_bytes is not None and nbytes > spec.max_bytes:
                        raise fail(f"not a usable {what}: {name!r} declares {shape} {dtype} ({_size(nbytes)}), "
                                   f"over its limit of {_size(spec.max_bytes)}")
                    total += nbytes
                    if total > max_total_bytes:
                        raise fail(f"not a usable {what}: its arrays declare more than the limit of "
                                   f"{_size(max_total_bytes)}")
                    if info.file_size != fp.tell() + nbytes:
                        raise fail(f"truncated or corrupt {what}: {name!r} does not hold the {shape} array its "
                                   "header declares")
                    array = np.empty(shape[::-1] if fortran else shape, dtype)
                    if not _fill(fp, array) or fp.read(1):  # reaching the end also checks the CRC
                        raise fail(f"truncated or corrupt {what}: {name!r} is cut short")
                arrays[name] = array.T if fortran else array
    except NpzFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError) as e:
        # RuntimeError: encrypted members; NotImplementedError: unknown compression methods.
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise fail(f"not a readable {what} (.npz: {detail})") from None
    missing = [p for p, spec in expected.items() if spec.required and p not in arrays]
    if missing:
        raise fail(f"not a usable {what}: it lacks {', '.join(repr(m) for m in missing)}")
    return arrays
