"""Image conversions at the edges: API tensors are float NCHW RGB in [-1, 1]; files are uint8 HWC."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]`` (values outside are clipped)."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> Image.Image:
    """Tile ``[N, C, H, W]`` images in [-1, 1] into one RGB picture with ``pad`` px gaps."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = arr[i]
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas)


def save_image_grid(images: torch.Tensor, path: str | Path, ncols: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, ncols).save(path)
    return path
