"""Photos in and out: any common image file, bytes, PIL image or array -> uint8 HWC RGB.

:func:`load_photo` is the one entry point for user photos. It

- refuses a decompression bomb (a small file whose header claims a huge picture) from the header
  alone, before any pixel is decoded;
- applies the EXIF orientation, so the array is upright as a photo viewer shows it;
- converts every Pillow mode to 8-bit RGB: greyscale and 1-bit are replicated to three channels;
  16-bit greyscale (``I;16``, ``I;16B``) is rescaled with ``round(v / 257)`` (65535 -> 255, the
  whole range kept, nothing clipped), 32-bit ``I`` likewise when its values exceed 255; float
  (``F``) is taken as [0, 1] if it fits there, else [0, 255], else its own min..max; CMYK and
  YCbCr go through Pillow's conversion (no ICC colour management); anything with transparency
  (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour) is **composited on
  white**, as a viewer with a white page shows it.

Conventions: arrays are uint8 ``[H, W, 3]`` RGB, C-contiguous and writable (a copy, never a view
of the caller's data).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from ganbrush_core.images import check_pixels, open_image, save_pil
from ganbrush_core.io import refuse_overwrite

#: Default limit on width * height. 64 Mpx is an 8000 x 8000 photo, ~190 MB as uint8 RGB.
MAX_PIXELS = 64_000_000

PhotoSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray

_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_MODES_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


class PhotoError(ValueError):
    """A photo that cannot be used; ``str()`` is one line naming the photo and what to do."""


def _describe(src: object) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return f"<PIL image {src.mode} {src.size[0]}x{src.size[1]}>"
    if isinstance(src, np.ndarray):
        return f"<array {src.dtype} {tuple(src.shape)}>"
    return f"<{getattr(src, 'name', type(src).__name__)}>"


def _open(src: PhotoSource, name: str, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) and check the size before any pixel is decoded."""
    if isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise PhotoError(f"{name}: no such file")
        fp: object = src
    elif isinstance(src, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(src))
    else:
        fp = src
    return open_image(fp, max_pixels, what="photo", error=PhotoError, name=name)


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if lo >= 0 and hi <= 1:
        scaled = a * 255
    elif lo >= 0 and hi <= 255:
        scaled = a
    else:  # an arbitrary range (e.g. a depth map): stretch it to 0..255 rather than clip it
        scaled = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _int_to_uint8(a: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Integers -> uint8 without clipping: a 16-bit image (``sixteen_bit``, values 0..65535) is
    divided by 257; other integers in 0..255 are kept; any wider range is stretched to 0..255."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo >= 0 and hi <= 255 and not sixteen_bit:
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return np.round(a.astype(np.float64) / 257).astype(np.uint8)  # 65535 / 257 = 255 exactly
    return np.clip(np.round((a.astype(np.float64) - lo) * (255 / max(hi - lo, 1))), 0, 255).astype(np.uint8)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 4]`` (straight alpha) composited on white -> uint8 ``[H, W, 3]``."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    out = rgba[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2)


def _pil_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return _on_white(np.array(im.convert("RGBA"))) if has_alpha else np.array(im.convert("RGB"))
    if mode in _MODES_ALPHA:
        return _on_white(np.array(im.convert("RGBA")))
    if mode in ("L", "1"):
        return _gray_to_rgb(np.array(im.convert("L")))
    if mode in _MODES_16BIT or mode == "I":
        # "I" (32-bit) has no fixed range: 0..255 is kept, 0..65535 rescaled, wider stretched.
        return _gray_to_rgb(_int_to_uint8(np.array(im), sixteen_bit=mode != "I"))
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.array(im)))
    try:  # CMYK, YCbCr, LAB, HSV, ...: Pillow's own conversion
        return np.array(im.convert("RGB"))
    except (ValueError, OSError) as e:
        raise PhotoError(f"{name}: cannot convert image mode {mode!r} to RGB ({e}); save it as RGB first") from None


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise PhotoError(f"{name}: expected an HxW, HxWx1, HxWx3 or HxWx4 image array")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = _float_to_uint8(a)
    elif np.issubdtype(a.dtype, np.integer):
        a = _int_to_uint8(a, sixteen_bit=a.dtype == np.uint16)
    else:
        raise PhotoError(f"{name}: unsupported array dtype {a.dtype}; use uint8 (0..255) or float (0..1)")
    if a.ndim == 2:
        return _gray_to_rgb(a)
    return _on_white(a) if a.shape[2] == 4 else np.array(a, dtype=np.uint8)


def load_photo(src: PhotoSource, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read a photo as uint8 ``[H, W, 3]`` RGB, upright (EXIF orientation applied).

    ``src``: a path, the file's bytes, a binary file object, a PIL image or an array (uint8,
    uint16 or bool; float in [0, 1]; HxW, HxWx1, HxWx3 or HxWx4 - alpha composited on white).
    ``max_pixels``: refuse photos with more pixels than this (checked from the file header,
    before decoding; ``None`` for no limit of ours - Pillow still refuses above ~179 Mpx).
    Raises :class:`PhotoError` for a missing, unreadable, truncated or too large photo.
    """
    name = _describe(src)
    if isinstance(src, np.ndarray):
        if src.ndim >= 2:
            check_pixels(name, src.shape[1], src.shape[0], max_pixels, "photo", PhotoError)
        return np.ascontiguousarray(_array_to_rgb(src, name))
    im = src if isinstance(src, Image.Image) else _open(src, name, max_pixels)
    if isinstance(src, Image.Image):
        check_pixels(name, im.size[0], im.size[1], max_pixels, "photo", PhotoError)
    try:
        im.load()
        upright = ImageOps.exif_transpose(im)
        return np.ascontiguousarray(_pil_to_rgb(upright, name))
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, PhotoError):
            raise
        raise PhotoError(f"{name}: not a readable image ({type(e).__name__}: {e})") from None
    finally:
        if im is not src:
            im.close()


def save_photo(image: np.ndarray, path: str | os.PathLike, force: bool = False, quality: int = 95) -> Path:
    """Write uint8 ``[H, W, 3]`` RGB (or ``[H, W]`` grey) to ``path``; the format follows the
    suffix (``.png``, ``.jpg``, ``.webp``, ...; JPEG/WebP at ``quality``). Refuses to overwrite an
    existing file unless ``force``. Written atomically (mode 0644), so a failed write never leaves
    a half-written photo behind."""
    path = Path(path)
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise PhotoError(f"{path}: save_photo expects uint8 [H, W, 3] RGB or [H, W] grey, got {a.dtype} "
                         f"{tuple(a.shape)}")
    refuse_overwrite(path, force)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise PhotoError(f"{path}: unknown image file suffix {path.suffix!r}; use .png or .jpg")
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    return save_pil(Image.fromarray(np.ascontiguousarray(a)), path, force=True, **options)
