"""EdgeConnect training data: a packed face folder (written by ``ganbrush data faces``) read with
numpy alone, random horizontal flips, and the Canny edges of each ground truth.

A packed folder holds ``images.npy`` (uint8 ``[N, H, W, 3]`` RGB, opened memory-mapped) and
``meta.json`` (at least ``"res"`` and ``"split"``). Only the ``"train"`` split is accepted, so the
held-out evaluation faces never enter training.

Edges are computed per image when it is loaded, after the flip, on the whole picture (the
official trainer also detects training edges without the mask). Measured on one busy core,
scikit-image's Canny with sigma 2 costs about 0.3 ms per 64 px and 1.1 ms per 128 px image: far
below a CPU training step (seconds), and on a GPU the DataLoader workers run it beside the
training step, so no edge cache is kept.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

from ganbrush_core import faces
from ganbrush_core.faces import FaceDataError
from inpainting.edges import DEFAULT_SIGMA
from inpainting.networks import SIZE_MULTIPLE

TRAIN_SPLIT = "train"


def read_packed_faces(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """The memory-mapped uint8 ``[N, H, W, 3]`` array and ``meta.json`` of a packed train folder
    (:func:`ganbrush_core.faces.read_packed_faces`), at a resolution EdgeConnect can take."""
    images, meta = faces.read_packed_faces(path, split=TRAIN_SPLIT)
    res = int(meta["res"])
    if res % SIZE_MULTIPLE:
        raise FaceDataError(f"{path}: resolution {res} is not a multiple of {SIZE_MULTIPLE}; build it at 64 or 128 px")
    return images, meta


def gray_and_edges(image: np.ndarray, sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[H, W, 3]`` -> (luminance, binary Canny edges), float32 ``[H, W]`` in [0, 1]
    (scikit-image ``rgb2gray`` and ``canny``, as :mod:`inpainting.edges` and the official loader)."""
    gray = rgb2gray(image)
    return gray.astype(np.float32), canny(gray, sigma=sigma).astype(np.float32)


class EdgeConnectFaces(faces.FaceDataset):
    """Training samples from a packed face folder (train split only).

    ``dataset[i]`` is a dict of float32 tensors: ``image`` RGB ``[3, H, W]``, ``gray`` ``[1, H, W]``
    and ``edges`` ``[1, H, W]`` (1 = edge), all in [0, 1]. With ``xflip`` each image is mirrored
    left-right with probability 1/2 before its edges are found. The array is opened lazily in each
    process so DataLoader workers share the page cache.
    """

    def __init__(self, path: str | os.PathLike, sigma: float = DEFAULT_SIGMA, xflip: bool = True):
        read_packed_faces(path)  # EdgeConnect's own checks (split, size multiple) first
        super().__init__(path, xflip=xflip, split=TRAIN_SPLIT)
        self.sigma = sigma

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
        return self.load(index, self.draw_flip())
