"""Writing files safely: atomically, readable by everyone (0644), never over a file unasked.

Every output ganbrush writes (photos, masks, ``.npz`` latents, weights, checkpoints, caches) goes
through :func:`atomic_write` (or :func:`atomic_path` for writers that want a path): the data is
written to a temporary file beside the target and renamed over it, so a kill or an error never
leaves half a file, and the temporary file is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

#: Mode of every file ganbrush writes. ``mkstemp`` creates 0600 files, which other users (a web
#: server, a second account reading shipped weights) could not read.
FILE_MODE = 0o644


def refuse_overwrite(paths: str | os.PathLike | Iterable[str | os.PathLike | None], force: bool = False) -> None:
    """Raise :class:`FileExistsError` naming every path in ``paths`` that exists, unless ``force``.
    ``None`` entries (an optional output that was not asked for) are skipped.

    The one wording for this check everywhere (CLI and API): ``... exists; pass --force
    (force=True) to overwrite``.
    """
    if force:
        return
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    existing = [str(p) for p in items if p is not None and Path(p).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise FileExistsError(f"{', '.join(existing)} {verb}; pass --force (force=True) to overwrite")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is chmod 0644 and renamed to ``path``.

    For writers that take a file name (``safetensors.save_file``, ``torch.save``, ``np.savez``).
    The temporary name keeps ``path``'s suffix (some writers append one otherwise). Parent folders
    are created. With ``force=False`` an existing ``path`` is refused first.
    """
    path = Path(path)
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", force: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it becomes ``path`` (0644).

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8). With ``force=False`` an existing ``path`` is
    refused before anything is written.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path, force=force) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = True) -> Path:
    """Atomically write ``data`` to ``path`` (0644); returns ``path``."""
    with atomic_write(path, "wb", force=force) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, force: bool = True) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path`` (0644); returns ``path``."""
    with atomic_write(path, "w", force=force) as f:
        f.write(text)
    return Path(path)
