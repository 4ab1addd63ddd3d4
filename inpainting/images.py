"""Image files at the edges: uint8 HWC files <-> float NCHW tensors (RGB in [-1, 1], maps in [0, 1])."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def _open(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__})") from e


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file (any mode, alpha dropped) as RGB ``[1, 3, H, W]`` in [-1, 1]."""
    arr = _open(Path(path), "RGB")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def read_map(path: str | os.PathLike) -> torch.Tensor:
    """A greyscale map (e.g. an edge map, white = edge) as ``[1, 1, H, W]`` in [0, 1]."""
    arr = _open(Path(path), "L")
    return torch.from_numpy(arr.copy())[None, None].float() / 255


def _write(arr: np.ndarray, path: Path, force: bool) -> Path:
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    try:
        fmt = Image.registered_extensions()[path.suffix.lower()]
    except KeyError as e:
        raise ValueError(f"{path}: unknown image extension (use .png)") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        Image.fromarray(arr).save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_image(image: torch.Tensor, path: str | os.PathLike, force: bool = False) -> Path:
    """Write RGB ``[1, 3, H, W]`` in [-1, 1] (rounded to uint8); refuses to overwrite unless ``force``."""
    x = ((image[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return _write(x.permute(1, 2, 0).numpy(), Path(path), force)


def write_map(values: torch.Tensor, path: str | os.PathLike, force: bool = False) -> Path:
    """Write a ``[1, 1, H, W]`` map in [0, 1] as 8-bit greyscale (white = 1)."""
    x = (values[0, 0].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return _write(x.numpy(), Path(path), force)
