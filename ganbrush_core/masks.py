"""Masks: the one reader and the one check, shared by inpainting and local edits.

In the API a mask is a float ``{0, 1}`` tensor ``[N, 1, H, W]`` with **1 = hole**, the region
to regenerate (inpainting) or allowed to change (local edits); 0 = keep. Files encode the same
thing as **white = hole**. Transparency, decided once for every reader: a transparent pixel is
**not** a hole, whatever its colour (the luminance is multiplied by alpha), so a brush stroke
painted on a transparent layer marks exactly the stroke.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError


class MaskError(ValueError):
    """A mask that cannot be used (unreadable, wrong shape, not binary, empty or full); ``str()``
    is one line saying what to do."""


class MaskFileNotFoundError(MaskError, FileNotFoundError):
    """The mask file does not exist: a :class:`MaskError` and a ``FileNotFoundError`` alike."""


def luminance01(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> float64 ``[H, W]`` in [0, 1]; transparent pixels count as black (not a hole)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float64) / 65535.0
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return arr if arr.max(initial=0) <= 1 else arr / 255.0
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0
    lum = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
    return lum * rgba[..., 3]


def read_mask(path: str | os.PathLike, invert: bool = False, size: int | tuple[int, int] | None = None
              ) -> torch.Tensor:
    """Read a mask image (any mode) as ``[1, 1, H, W]`` float in {0, 1}: **white = hole**, binarised
    at 50% grey, transparent = not a hole. ``invert`` reads black as the hole instead. With ``size``
    (``(H, W)`` or one side) the grey levels are first resized by area averaging, so a mask drawn
    on a larger copy of the image still works."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            lum = luminance01(img)
    except FileNotFoundError as e:
        raise MaskFileNotFoundError(f"{p}: no such mask file") from e
    except (UnidentifiedImageError, OSError) as e:
        raise MaskError(f"{p}: not a readable image ({type(e).__name__})") from e
    grey = torch.from_numpy(lum)[None, None]
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(grey.shape[-2:]) != hw:
            grey = F.interpolate(grey, size=hw, mode="area")
    hole = grey >= 0.5
    if invert:
        hole = ~hole
    return hole.float()


def hole_ratio(mask: torch.Tensor) -> float:
    """Fraction of hole pixels over the whole batch."""
    return float((mask > 0.5).float().mean())


def check_mask(mask: torch.Tensor, size: int | tuple[int, int], *, allow_empty: bool = True,
               allow_full: bool = False) -> None:
    """Raise :class:`MaskError` unless ``mask`` is ``[N, 1, H, W]`` of ``size`` (``(H, W)`` or one
    side) with values in {0, 1}, at least one kept pixel per image (unless ``allow_full``) and at
    least one hole pixel per image (unless ``allow_empty``)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise MaskError(f"mask must be [N, 1, H, W], got {list(mask.shape)}")
    if tuple(mask.shape[-2:]) != hw:
        raise MaskError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {hw[1]}x{hw[0]}; "
                        "resize the mask to the image")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise MaskError("mask values must be 0 (keep) or 1 (hole); binarise it first")
    if not allow_full and bool((mask.flatten(1).amin(dim=1) == 1).any()):
        raise MaskError("the mask covers the whole image: nothing is left to keep")
    if not allow_empty and bool((mask.flatten(1).amax(dim=1) == 0).any()):
        raise MaskError("the mask is empty: mark the region to change in white")
