"""Image conversions at the edges of ganbrush.

API tensors are float32 NCHW RGB in [-1, 1] (maps such as edges: ``[N, 1, H, W]`` in [0, 1]);
files, PIL, Gradio and packed data sets are uint8 HWC. The conversions here are the only place
that maps one to the other: ``x / 127.5 - 1`` in, ``round((x + 1) * 127.5)`` clipped out.
Every file is written atomically (mode 0644 under umask 022) and refuses to overwrite unless
asked. Every file is read through :func:`open_image`, which refuses a decompression bomb (a tiny
file whose header claims a huge picture) from the header, before any pixel is decoded.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ganbrush_core.io import atomic_write, refuse_overwrite


def uint8_to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` (or one ``[H, W, C]`` image) -> float32 ``[N, C, H, W]`` in [-1, 1].

    Always a copy (memory-mapped and read-only arrays are fine)."""
    t = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"expected uint8 [N, H, W, C] or [H, W, C], got {list(t.shape)}")
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]`` (values outside are clipped)."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> Image.Image:
    """Tile ``[N, C, H, W]`` images in [-1, 1] into one RGB picture with ``pad`` px white gaps."""
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


#: What to tell a user who gave an output image a suffix Pillow cannot write.
IMAGE_SUFFIX_HINT = ".png or .jpg (or another image format Pillow writes)"


def image_suffixes() -> frozenset[str]:
    """The file suffixes (lower case, with the dot) of the image formats Pillow can *write*:
    ``.png``, ``.jpg``, ``.webp``, ... (some formats it reads, such as ``.psd``, it cannot write)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def save_pil(image: Image.Image, path: str | os.PathLike, force: bool = True, **options) -> Path:
    """Write a PIL image atomically (mode 0644); the format follows the suffix (``.png``,
    ``.jpg``, ...; ``options`` go to ``Image.save``). Refuses an existing file unless ``force``."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or path.suffix.lower() not in image_suffixes():
        raise ValueError(f"{path}: unknown image file suffix {path.suffix!r}; use {IMAGE_SUFFIX_HINT}")
    refuse_overwrite(path, force)
    with atomic_write(path) as f:
        image.save(f, format=fmt, **options)
    return path


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, ncols: int | None = None) -> Path:
    """:func:`image_grid` of ``[N, C, H, W]`` in [-1, 1] written to ``path`` (overwrites)."""
    return save_pil(image_grid(images, ncols), path)


#: Default limit on width * height of an image or mask file read here: 64 Mpx (an 8000 x 8000
#: photo, as :data:`inversion.photos.MAX_PIXELS`). Decoded it costs 64 MB per byte per pixel.
MAX_PIXELS = 64_000_000


def check_pixels(name: str, width: int, height: int, max_pixels: int | None, what: str = "image",
                 error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` (one line saying what size to downscale to) when ``width * height`` exceeds
    ``max_pixels`` (``None``: no limit). ``name`` names the file, ``what`` the kind of picture."""
    if max_pixels is not None and width * height > max_pixels:
        shrink = (max_pixels / (width * height)) ** 0.5
        raise error(f"{name}: {width}x{height} = {width * height / 1e6:.1f} Mpx is over the limit of "
                    f"{max_pixels / 1e6:.1f} Mpx for a {what} (a decompression bomb, or a very large {what}): "
                    f"downscale it to at most {max(1, int(width * shrink))}x{max(1, int(height * shrink))} px "
                    "and try again")


def open_image(src: str | os.PathLike | BinaryIO, max_pixels: int | None = MAX_PIXELS, what: str = "image",
               error: type[ValueError] = ValueError, name: str | None = None) -> Image.Image:
    """Open an image file (a path or a binary file object) lazily (header only: no pixel is
    decoded) and refuse it, raising ``error``, when ``width * height`` exceeds ``max_pixels``
    (``None``: only Pillow's own ~179 Mpx limit) or when it is no readable image. ``name`` names
    it in messages (default: the path). A missing file raises ``FileNotFoundError``.
    Use it as a context manager; ``load()`` or ``convert()`` then decodes a bounded picture."""
    name = name if name is not None else str(src)
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 Mpx; the limit that matters is ours, checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:
        # Pillow refuses above ~179 Mpx from the header itself, before we get to see the size.
        count = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(count.group(1)) / 1e6:.1f} Mpx" if count else "a huge size"
        limit = f"{max_pixels / 1e6:.1f} Mpx" if max_pixels is not None else "Pillow's limit"
        raise error(f"{name}: the header claims {size}, over the limit of {limit} for a {what} "
                    "(a decompression bomb?); refusing to decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise error(f"{name}: not a readable image ({type(e).__name__})") from None
    try:
        check_pixels(name, img.size[0], img.size[1], max_pixels, what, error)
    except ValueError:
        img.close()
        raise
    return img


def _open(path: Path, mode: str) -> np.ndarray:
    try:
        with open_image(path) as img:
            return np.asarray(img.convert(mode))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:  # e.g. truncated pixel data
        raise ValueError(f"{path}: not a readable image ({type(e).__name__})") from e


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file (any mode, alpha dropped) as RGB ``[1, 3, H, W]`` in [-1, 1]."""
    return uint8_to_float(_open(Path(path), "RGB"))


def read_map(path: str | os.PathLike) -> torch.Tensor:
    """A greyscale map (e.g. an edge map, white = edge) as ``[1, 1, H, W]`` in [0, 1]."""
    arr = _open(Path(path), "L")
    return torch.from_numpy(arr.copy())[None, None].float() / 255


def write_image(image: torch.Tensor, path: str | os.PathLike, force: bool = False) -> Path:
    """Write RGB ``[1, 3, H, W]`` in [-1, 1] (rounded to uint8); refuses to overwrite unless ``force``."""
    return save_pil(Image.fromarray(to_uint8(image[:1])[0]), path, force)


def write_map(values: torch.Tensor, path: str | os.PathLike, force: bool = False) -> Path:
    """Write a ``[1, 1, H, W]`` map in [0, 1] as 8-bit greyscale (white = 1)."""
    x = (values[0, 0].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return save_pil(Image.fromarray(x.numpy()), path, force)
