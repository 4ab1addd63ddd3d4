"""The picture files of a user's folder, in a fixed order (so every run pairs and lists them alike)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image


def readable_suffixes() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of the image formats Pillow can read."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def image_files(folder: str | os.PathLike, what: str = "--images") -> list[Path]:
    """The image files directly inside ``folder`` (by suffix; hidden files skipped), sorted by
    name. One-line errors for a missing folder, a file, or a folder without images; ``what``
    names the option the folder came from."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path}: no such folder")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file; give a folder of images")
    suffixes = readable_suffixes()
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{what} {path}: no image files in this folder (.png, .jpg, ...)")
    return files
