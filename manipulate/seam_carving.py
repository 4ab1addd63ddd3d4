"""Classical retargeting baselines: seam carving (Avidan and Shamir, SIGGRAPH 2007), plain resize
(stretch) and centre crop.

Images are uint8 ``[H, W, 3]`` RGB arrays (files, PIL); sizes are ``(width, height)`` in pixels,
as in PIL and the ``--size WxH`` of ``ganbrush retarget``.

Seam carving removes, one at a time, the 8-connected top-to-bottom path of pixels with the least
gradient energy (:func:`energy`, recomputed after every seam), so flat
regions shrink and edges stay. To enlarge, it finds the ``k`` seams that removal would take
(on a copy) and duplicates each of them in the original, the copy being the mean of the seam
pixel and its right neighbour; more than half the width is added in stages of at most half
the current width, so the same seam is not stretched over and over. Heights change on the
transposed image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

Size = tuple[int, int]  # (width, height)

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _check(image: np.ndarray, size: Size) -> tuple[int, int]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"output size must be at least 1x1, got {w}x{h}")
    return w, h


def stretch(image: np.ndarray, size: Size) -> np.ndarray:
    """Plain resize to ``size`` (bicubic; Lanczos-filtered when shrinking, as PIL does)."""
    w, h = _check(image, size)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def center_crop(image: np.ndarray, size: Size) -> np.ndarray:
    """The centred ``size`` window. Cropping cannot add content: a size larger than the image on
    either axis raises :class:`ValueError` (the benchmark reports it as n/a)."""
    w, h = _check(image, size)
    H, W = image.shape[:2]
    if w > W or h > H:
        raise ValueError(f"centre crop cannot enlarge {W}x{H} to {w}x{h}")
    top, left = (H - h) // 2, (W - w) // 2
    return image[top:top + h, left:left + w].copy()


def _abs_diff(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the absolute forward and backward differences along ``axis`` (one-sided at the ends)."""
    d = np.abs(np.diff(a, axis=axis))
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 0)
    back = np.pad(d, pad)
    pad[axis] = (0, 1)
    fwd = np.pad(d, pad)
    return (back + fwd) / 2


def energy(image: np.ndarray) -> np.ndarray:
    """Gradient energy ``|d/dx| + |d/dy|`` of the luminance, float32 ``[H, W]``; each derivative is
    the mean of the absolute forward and backward differences (a central difference would see
    no edge in a one-pixel stripe pattern)."""
    grey = image.astype(np.float32) @ _LUMA
    return _abs_diff(grey, 1) + _abs_diff(grey, 0)


def vertical_seam(cost_map: np.ndarray) -> np.ndarray:
    """Column index per row ``[H]`` of the 8-connected top-to-bottom path of least total
    ``cost_map`` ``[H, W]`` (dynamic programming over rows)."""
    H, W = cost_map.shape
    cost = cost_map.astype(np.float64)
    back = np.zeros((H, W), np.int8)
    cols = np.arange(W)
    inf = np.array([np.inf])
    for i in range(1, H):
        prev = cost[i - 1]
        options = np.stack([np.concatenate([inf, prev[:-1]]), prev, np.concatenate([prev[1:], inf])])
        pick = options.argmin(0)
        cost[i] += options[pick, cols]
        back[i] = pick - 1
    seam = np.empty(H, np.int64)
    seam[-1] = int(cost[-1].argmin())
    for i in range(H - 1, 0, -1):
        seam[i - 1] = seam[i] + back[i, seam[i]]
    return seam


def _remove(a: np.ndarray, seam: np.ndarray) -> np.ndarray:
    keep = np.ones(a.shape[:2], bool)
    keep[np.arange(a.shape[0]), seam] = False
    return a[keep].reshape(a.shape[0], a.shape[1] - 1, *a.shape[2:])


def _narrow(image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove ``k`` seams: the narrowed image and a bool ``[H, W]`` map of the removed pixels."""
    H, W = image.shape[:2]
    index = np.broadcast_to(np.arange(W), (H, W)).copy()  # original column of each pixel left
    removed = np.zeros((H, W), bool)
    for _ in range(k):
        seam = vertical_seam(energy(image))
        removed[np.arange(H), index[np.arange(H), seam]] = True
        image, index = _remove(image, seam), _remove(index, seam)
    return image, removed


def _widen(image: np.ndarray, k: int) -> np.ndarray:
    """Insert ``k <= W`` seams: the ones :func:`_narrow` would remove, each duplicated."""
    _, marked = _narrow(image, k)
    img = image.astype(np.float32)
    right = np.concatenate([img[:, 1:], img[:, -1:]], axis=1)
    both = np.stack([img, (img + right) / 2], axis=2)  # [H, W, 2, 3]: the pixel, then its copy
    emit = np.stack([np.ones_like(marked), marked], axis=2)
    out = both[emit].reshape(image.shape[0], image.shape[1] + k, 3)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _carve_width(image: np.ndarray, width: int) -> np.ndarray:
    W = image.shape[1]
    if width < W:
        return _narrow(image, W - width)[0]
    while image.shape[1] < width:
        image = _widen(image, min(width - image.shape[1], max(1, image.shape[1] // 2)))
    return image


def seam_carve(image: np.ndarray, size: Size) -> np.ndarray:
    """``image`` retargeted to ``size`` by seam carving: the width first, then the height."""
    w, h = _check(image, size)
    out = _carve_width(image, w)
    return np.ascontiguousarray(_carve_width(out.transpose(1, 0, 2), h).transpose(1, 0, 2))
