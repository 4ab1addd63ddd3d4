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

from ganbrush_core.images import MAX_PIXELS, open_image


class MaskError(ValueError):
    """A mask that cannot be used (unreadable, wrong shape, not binary, empty or full); ``str()``
    is one line saying what to do."""


class MaskFileNotFoundError(MaskError, FileNotFoundError):
    """The mask file does not exist: a :class:`MaskError` and a ``FileNotFoundError`` alike."""


# Rows per block when converting to RGBA: bounds the float temporaries to ~64 MB whatever the size.
_BLOCK_PIXELS = 4_000_000


def luminance01(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> float32 ``[H, W]`` in [0, 1]; transparent pixels count as black (not a hole).

    Memory: the result (4 bytes a pixel) plus bounded temporaries; colour and alpha modes are
    converted block by block, never as one float copy of the whole RGBA picture."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / np.float32(65535)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return arr if arr.max(initial=0) <= 1 else arr / np.float32(255)
    if img.mode == "1":
        return np.asarray(img, dtype=np.float32)  # already 0 or 1
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32) / np.float32(255)
    width, height = img.size
    out = np.empty((height, width), np.float32)
    rows = max(1, _BLOCK_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        block = img.crop((0, top, width, min(height, top + rows))).convert("RGBA")
        rgba = np.asarray(block, dtype=np.float32) / np.float32(255)
        out[top : top + rows] = (rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114) * rgba[..., 3]
    return out


def read_mask(path: str | os.PathLike, invert: bool = False, size: int | tuple[int, int] | None = None,
              max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
    """Read a mask image (any mode) as ``[1, 1, H, W]`` float in {0, 1}: **white = hole**, binarised
    at 50% grey, transparent = not a hole. ``invert`` reads black as the hole instead. With ``size``
    (``(H, W)`` or one side) the grey levels are first resized by area averaging, so a mask drawn
    on a larger copy of the image still works.

    A mask of more than ``max_pixels`` pixels (64 Mpx by default) is refused from its header,
    before any pixel is decoded: a tiny 1-bit PNG can claim a picture of gigabytes."""
    p = Path(path)
    try:
        with open_image(p, max_pixels, what="mask", error=MaskError) as img:
            img.load()
            lum = luminance01(img)
    except MaskError:
        raise
    except FileNotFoundError as e:
        raise MaskFileNotFoundError(f"{p}: no such mask file") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:  # e.g. truncated pixel data
        raise MaskError(f"{p}: not a readable image ({type(e).__name__})") from e
    grey = torch.from_numpy(lum)[None, None]
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(grey.shape[-2:]) != hw:
            grey = F.interpolate(grey, size=hw, mode="area")
    hole = grey >= 0.5
    del grey, lum  # before the float copy: the peak stays one float picture
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
