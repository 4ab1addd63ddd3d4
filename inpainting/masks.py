"""Hole masks for inpainting: procedural training masks and the irregular evaluation set.

Masks in the API are float ``{0, 1}`` tensors ``[N, 1, H, W]`` with **1 = hole**; files encode
holes as white. Reading user mask files and checking masks is :mod:`ganbrush_core.masks`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ganbrush_core.masks import MaskError, read_mask
from ganbrush_core.paths import data_root

# The NVIDIA irregular mask test set: 6 bins of 2000 masks, sorted by hole ratio.
IRREGULAR_DIR = Path("masks") / "irregular-12k"
IRREGULAR_BIN_SIZE = 2000
IRREGULAR_BINS: tuple[tuple[float, float], ...] = (
    (0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6),
)
# Above this hole ratio a user mask is more likely drawn the other way round (black = hole).
INVERTED_RATIO = 0.6


def random_mask(height: int, width: int, rng: np.random.Generator | int | None = None, *,
                max_strokes: int = 4, max_boxes: int = 2, max_stroke_width: int | None = None,
                ratio_range: tuple[float, float] = (0.05, 0.6), max_tries: int = 50) -> torch.Tensor:
    """A LaMa-style training mask ``[1, H, W]`` (1 = hole): thick random-walk strokes plus boxes.

    ``rng`` is a numpy Generator or a seed, so a seed always gives the same mask. Masks are redrawn
    until the hole ratio falls in ``ratio_range`` (the last draw is returned after ``max_tries``).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    side = min(height, width)
    max_w = max_stroke_width or max(2, side // 8)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(max_tries):
        mask[:] = 0
        for _ in range(rng.integers(1, max_strokes + 1)):
            _draw_stroke(mask, rng, max_w, side)
        for _ in range(rng.integers(0, max_boxes + 1)):
            bh, bw = (int(rng.integers(side // 10 + 1, side // 3 + 2)) for _ in range(2))
            y, x = int(rng.integers(0, max(1, height - bh))), int(rng.integers(0, max(1, width - bw)))
            mask[y : y + bh, x : x + bw] = 1
        if ratio_range[0] <= mask.mean() <= ratio_range[1]:
            break
    return torch.from_numpy(mask.astype(np.float32))[None]


def _draw_stroke(mask: np.ndarray, rng: np.random.Generator, max_width: int, side: int) -> None:
    """One random walk of thick line segments with round joints."""
    h, w = mask.shape
    y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
    width = int(rng.integers(max(1, max_width // 3), max_width + 1))
    angle = rng.uniform(0, 2 * np.pi)
    for _ in range(rng.integers(2, 8)):
        angle += rng.uniform(-np.pi / 2, np.pi / 2)  # keep the walk mostly going somewhere
        length = rng.uniform(side / 10, side / 3)
        ny = int(np.clip(y + length * np.sin(angle), 0, h - 1))
        nx = int(np.clip(x + length * np.cos(angle), 0, w - 1))
        cv2.line(mask, (x, y), (nx, ny), 1, width)
        cv2.circle(mask, (nx, ny), width // 2, 1, -1)
        y, x = ny, nx


def irregular_mask_bin(index: int) -> int:
    """The bin (0 = 1-10% ... 5 = 50-60% hole) of irregular-12k mask ``index``."""
    if not 0 <= index < IRREGULAR_BIN_SIZE * len(IRREGULAR_BINS):
        raise MaskError(f"irregular mask index {index} is outside 0..{IRREGULAR_BIN_SIZE * len(IRREGULAR_BINS) - 1}")
    return index // IRREGULAR_BIN_SIZE


def irregular_mask_indices(bin_index: int) -> range:
    """Indices of the masks in one bin (0 = 1-10% ... 5 = 50-60% hole)."""
    if not 0 <= bin_index < len(IRREGULAR_BINS):
        raise MaskError(f"irregular mask bin {bin_index} is outside 0..{len(IRREGULAR_BINS) - 1}")
    return range(bin_index * IRREGULAR_BIN_SIZE, (bin_index + 1) * IRREGULAR_BIN_SIZE)


def load_irregular_mask(index: int, size: int | tuple[int, int] | None = None, root: str | os.PathLike | None = None
                        ) -> torch.Tensor:
    """Irregular-12k mask ``index`` as ``[1, 1, H, W]`` (1 = hole), resized (nearest) to ``size``."""
    irregular_mask_bin(index)
    path = Path(root) if root is not None else data_root()
    path = path / IRREGULAR_DIR / f"{index:05d}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: irregular mask not found (set GANBRUSH_DATA or put shared/data beside "
                                "the repository)")
    mask = read_mask(path)
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        mask = torch.nn.functional.interpolate(mask, size=hw, mode="nearest")
    return mask
