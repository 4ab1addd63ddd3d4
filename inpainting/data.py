"""EdgeConnect training data: a packed face folder (written by ``ganbrush data faces``) read with
numpy alone, random horizontal flips, and the Canny edges of each ground truth.

A packed folder holds ``images.npy`` (uint8 ``[N, H, W, 3]`` RGB, opened memory-mapped) and
``meta.json`` (at least ``"res"`` and ``"split"``). Only the ``"train"`` split is accepted, so the
held-out evaluation faces (DESIGN.md section 4) never enter training.

Edges are computed per image when it is loaded, after the flip, on the whole picture (the
official trainer also detects training edges without the mask). Measured on one busy core,
scikit-image's Canny with sigma 2 costs about 0.3 ms per 64 px and 1.1 ms per 128 px image: far
below a CPU training step (seconds), and on a GPU the DataLoader workers run it beside the
training step, so no edge cache is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny
from torch.utils.data import Dataset

from inpainting.edges import DEFAULT_SIGMA
from inpainting.networks import SIZE_MULTIPLE

IMAGES_FILE = "images.npy"
META_FILE = "meta.json"
TRAIN_SPLIT = "train"


class FaceDataError(ValueError):
    """The training folder cannot be used; ``str()`` is one line saying what to do."""


def read_packed_faces(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """The memory-mapped uint8 ``[N, H, W, 3]`` array and ``meta.json`` of a packed train folder."""
    path = Path(path)
    images_file, meta_file = path / IMAGES_FILE, path / META_FILE
    if not images_file.is_file() or not meta_file.is_file():
        raise FaceDataError(f"{path}: not a packed face folder (needs {IMAGES_FILE} and {META_FILE}); build one with "
                            "`ganbrush data faces --res 128 --out DIR`")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise FaceDataError(f"{meta_file}: not valid JSON ({e.msg}); rebuild the folder") from e
    if not isinstance(meta, dict) or "res" not in meta or "split" not in meta:
        raise FaceDataError(f"{meta_file}: needs the keys 'res' and 'split'; rebuild the folder")
    if meta["split"] != TRAIN_SPLIT:
        raise FaceDataError(f"{path} holds the {meta['split']!r} split; EdgeConnect trains on the train split only "
                            "(build it with `ganbrush data faces --split train`)")
    try:
        images = np.load(images_file, mmap_mode="r")
    except ValueError as e:
        raise FaceDataError(f"{images_file}: unreadable ({e}); rebuild the folder") from e
    res = int(meta["res"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (res, res, 3) or len(images) == 0:
        raise FaceDataError(f"{images_file}: expected uint8 [N, {res}, {res}, 3] with N > 0, got {images.dtype} "
                            f"{list(images.shape)}; rebuild the folder")
    if res % SIZE_MULTIPLE:
        raise FaceDataError(f"{path}: resolution {res} is not a multiple of {SIZE_MULTIPLE}; build it at 64 or 128 px")
    return images, meta


def gray_and_edges(image: np.ndarray, sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[H, W, 3]`` -> (luminance, binary Canny edges), float32 ``[H, W]`` in [0, 1]
    (scikit-image ``rgb2gray`` and ``canny``, as :mod:`inpainting.edges` and the official loader)."""
    gray = rgb2gray(image)
    return gray.astype(np.float32), canny(gray, sigma=sigma).astype(np.float32)


class EdgeConnectFaces(Dataset):
    """Training samples from a packed face folder.

    ``dataset[i]`` is a dict of float32 tensors: ``image`` RGB ``[3, H, W]``, ``gray`` ``[1, H, W]``
    and ``edges`` ``[1, H, W]`` (1 = edge), all in [0, 1]. With ``xflip`` each image is mirrored
    left-right with probability 1/2 (torch's RNG, which the DataLoader seeds per worker) before its
    edges are found. The array is opened lazily in each process so DataLoader workers share the
    page cache.
    """

    def __init__(self, path: str | os.PathLike, sigma: float = DEFAULT_SIGMA, xflip: bool = True):
        self.path = Path(path)
        images, self.meta = read_packed_faces(self.path)
        self.res, self._len = int(self.meta["res"]), len(images)
        self.sigma, self.xflip = sigma, xflip
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return self._len

    def _array(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
        return self._images

    def load(self, index: int, flip: bool = False) -> dict[str, torch.Tensor]:
        """Sample ``index``, mirrored if ``flip`` (deterministic; ``__getitem__`` draws the flip)."""
        image = self._array()[index]
        image = np.array(image[:, ::-1] if flip else image)  # a writable, contiguous copy of the mmap rows
        gray, edges = gray_and_edges(image, self.sigma)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255,
            "gray": torch.from_numpy(gray)[None],
            "edges": torch.from_numpy(edges)[None],
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        flip = self.xflip and bool(torch.rand(()) < 0.5)
        return self.load(index, flip)
