"""ganbrush weight files: safetensors with the architecture config as JSON in the metadata.

Every network ganbrush saves (generators, EdgeConnect, the attribute classifier) is one
``.safetensors`` file whose string metadata holds ``format`` (which kind of network), ``version``,
``config`` (the constructor config, JSON) and any extra keys the caller adds (JSON-encode
non-string values). :func:`save_safetensors` writes it atomically with mode 0644;
:func:`read_safetensors` reads it back and checks ``format``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from ganbrush_core.io import atomic_path, refuse_overwrite

T = TypeVar("T")


class WeightsFileError(ValueError):
    """A weight file cannot be read as the expected kind; ``str()`` is one line (without the path:
    callers re-raise it with the file name and their own error class)."""


@dataclass
class WeightsFile:
    """What :func:`read_safetensors` returns: tensors as stored (dtype unchanged), the decoded
    ``config`` and the whole string ``metadata``."""

    tensors: dict[str, torch.Tensor]
    config: dict
    metadata: dict[str, str]


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file (u64 header length, then a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], *, format: str, version: str,
                     config: Mapping, metadata: Mapping[str, str] | None = None,
                     dtype: torch.dtype | None = None, force: bool = True) -> Path:
    """Write ``tensors`` (floating ones cast to ``dtype`` if given; all moved to CPU) with the
    metadata ``format``, ``version``, ``config`` (JSON) and ``metadata``; atomic, mode 0644.
    The suffix must be ``.safetensors``; an existing file is refused unless ``force``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsFileError(f"{path}: ganbrush weights are saved as .safetensors")
    refuse_overwrite(path, force)
    stored = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
              for k, v in tensors.items()}
    meta = {"format": format, "version": version, "config": json.dumps(dict(config))}
    meta.update(metadata or {})
    with atomic_path(path) as tmp:
        save_file(stored, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise WeightsFileError(f"truncated or corrupt safetensors file ({_first_line(e)})") from e


def read_safetensors(path: str | os.PathLike, format: str, what: str | None = None) -> WeightsFile:
    """Read a :func:`save_safetensors` file whose ``format`` must be ``format`` (``what``, e.g.
    "an EdgeConnect generator", names that kind in the error).

    Raises :class:`WeightsFileError`: "safetensors file is not ``what`` (format=...)" for another
    kind, "truncated or corrupt safetensors file (...)" for a damaged one.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != format:
                found = meta.get("format")
                raise WeightsFileError(f"safetensors file is not {what or repr(format)} (format={found!r})")
            config = json.loads(meta["config"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise WeightsFileError(f"truncated or corrupt safetensors file ({_first_line(e)})") from e
    return WeightsFile(tensors, config, meta)


def config_from_dict(cls: type[T], d: Mapping, what: str = "config") -> T:
    """Rebuild the dataclass ``cls`` from a stored config (``json.loads`` of the metadata), refusing
    keys it does not have (a file written by a newer version), so nothing is silently dropped."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys {sorted(unknown)}")
    return cls(**d)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
