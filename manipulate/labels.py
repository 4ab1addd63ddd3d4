"""Semantic label maps of faces: the classes, their palette, and label-map files.

A label map is an integer map ``[H, W]`` (uint8 on disk, int64 ``[N, H, W]`` in tensors) whose
values are indices into :data:`CLASSES`; one-hot tensors are float ``[N, NUM_CLASSES, H, W]``.
Maps live in the aligned face's frame (:mod:`inversion.align`, ganbrush framing), like the
generator's renders. "Left" and "right" are as seen in the picture (the landmark convention of
:mod:`inversion.align`), not the person's own.

Files: a colour-coded RGB PNG (each class painted in its :data:`PALETTE` colour; painting
programs that anti-alias the brush are forgiven: every pixel snaps to the nearest palette
colour) or an index PNG (mode ``L``, or ``P`` with :data:`PALETTE` as its palette; values
``0 .. NUM_CLASSES - 1``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganbrush_core.images import open_image, save_pil

#: The classes of a face's label map, in index order.
CLASSES: tuple[str, ...] = (
    "background", "skin", "hair", "left_brow", "right_brow", "left_eye", "right_eye", "nose",
    "upper_lip", "lower_lip", "inner_mouth",
)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

#: One colour per class (RGB), far enough apart that a painted map snaps back without doubt.
PALETTE: np.ndarray = np.array([
    (0, 0, 0),        # background
    (230, 180, 140),  # skin
    (120, 60, 20),    # hair
    (0, 160, 0),      # left brow
    (0, 90, 255),     # right brow
    (255, 255, 0),    # left eye
    (0, 255, 255),    # right eye
    (255, 0, 0),      # nose
    (255, 0, 255),    # upper lip
    (150, 0, 200),    # lower lip
    (255, 255, 255),  # inner mouth
], dtype=np.uint8)

#: The classes drawn from dlib's 68 landmarks (the rest come from the face parser).
LANDMARK_CLASSES: tuple[str, ...] = CLASSES[3:]


class LabelMapError(ValueError):
    """A label-map file or array that is not a label map of this palette."""


def check_labels(labels: np.ndarray, what: str = "label map") -> np.ndarray:
    """``labels`` as a uint8 ``[H, W]`` array, refused unless every value is a class index."""
    a = np.asarray(labels)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise LabelMapError(f"{what} must be an integer [H, W] array, got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= NUM_CLASSES):
        raise LabelMapError(f"{what} holds values outside 0..{NUM_CLASSES - 1}")
    return a.astype(np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB: each pixel in its class's palette colour."""
    return PALETTE[check_labels(labels)]


def snap_colors(rgb: np.ndarray, max_distance: float = 60.0, what: str = "label map") -> np.ndarray:
    """uint8 ``[H, W]`` class indices of a colour-coded map: each pixel's nearest palette colour.
    Pixels farther than ``max_distance`` (RGB Euclidean) from every palette colour are refused
    when they are more than 1 % of the map: the file is then not painted with this palette."""
    a = np.asarray(rgb, dtype=np.float32)
    d = ((a[..., None, :] - PALETTE[None, None].astype(np.float32)) ** 2).sum(-1)
    labels = d.argmin(-1).astype(np.uint8)
    far = np.sqrt(d.min(-1)) > max_distance
    if far.mean() > 0.01:
        raise LabelMapError(f"{what}: {far.mean():.0%} of the pixels are far from every class colour; paint with "
                            "the palette of `ganbrush labels --palette` (or pass an index PNG)")
    return labels


def _has_our_palette(image: Image.Image) -> bool:
    """Whether a palette image's first colours are :data:`PALETTE` (then its values are indices)."""
    pal = (image.getpalette() or [])[:3 * NUM_CLASSES]
    return len(pal) == 3 * NUM_CLASSES and np.array_equal(np.reshape(pal, (-1, 3)), PALETTE)


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """uint8 ``[H, W]`` class indices from a colour-coded PNG or an index PNG (see the module
    docstring). A one-channel image is read as indices; anything else as colours."""
    name = Path(path).name
    with open_image(path, what="label map", error=LabelMapError) as image:
        if image.mode in ("L", "I", "I;16"):
            return check_labels(np.asarray(image), what=name)
        if image.mode == "P" and _has_our_palette(image):
            return check_labels(np.asarray(image), what=name)
        return snap_colors(np.asarray(image.convert("RGB")), what=name)


def write_label_map(labels: np.ndarray, path: str | os.PathLike, index_path: str | os.PathLike | None = None,
                    force: bool = False) -> list[Path]:
    """Write the colour-coded map to ``path`` and, with ``index_path``, the index PNG (mode
    ``L``). Refuses existing files unless ``force``. Returns the paths written."""
    labels = check_labels(labels)
    written = [save_pil(Image.fromarray(colorize(labels)), path, force=force)]
    if index_path is not None:
        written.append(save_pil(Image.fromarray(labels, mode="L"), index_path, force=force))
    return written


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """float ``[N, NUM_CLASSES, H, W]`` from int ``[N, H, W]`` class indices."""
    if labels.ndim != 3:
        raise LabelMapError(f"expected [N, H, W] class indices, got shape {tuple(labels.shape)}")
    return F.one_hot(labels.long(), NUM_CLASSES).permute(0, 3, 1, 2).float()


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """A label map resized to ``size`` x ``size``: by majority over each output pixel's area when
    shrinking (nearest-neighbour would drop thin brows and lips at random), nearest otherwise."""
    labels = check_labels(labels)
    h, w = labels.shape
    if (h, w) == (size, size):
        return labels.copy()
    onehot = one_hot(torch.from_numpy(labels)[None].long())
    if size < min(h, w):
        votes = F.interpolate(onehot, size=(size, size), mode="area")
    else:
        votes = F.interpolate(onehot, size=(size, size), mode="nearest")
    return votes.argmax(1)[0].numpy().astype(np.uint8)


#: Class index after a horizontal flip (left and right parts swap).
FLIP_PERMUTATION: np.ndarray = np.arange(NUM_CLASSES)
for _a, _b in (("left_brow", "right_brow"), ("left_eye", "right_eye")):
    FLIP_PERMUTATION[CLASS_INDEX[_a]], FLIP_PERMUTATION[CLASS_INDEX[_b]] = CLASS_INDEX[_b], CLASS_INDEX[_a]


def flip_labels(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """A label map (``[..., H, W]`` indices) mirrored left-right, left and right classes swapped."""
    if isinstance(labels, torch.Tensor):
        perm = torch.as_tensor(FLIP_PERMUTATION, device=labels.device)
        return perm[labels.flip(-1).long()].to(labels.dtype)
    return FLIP_PERMUTATION[np.asarray(labels)[..., ::-1]].astype(np.asarray(labels).dtype)


# -- packed labelled faces ----------------------------------------------------------------------------
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"


def read_labelled_faces(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a packed labelled face set (``ganbrush data labels``): uint8
    ``[N, H, W, 3]`` RGB and uint8 ``[N, H, W]`` class indices, memory-mapped."""
    root = Path(path)
    files = [root / IMAGES_FILE, root / LABELS_FILE]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise LabelMapError(f"{root}: no labelled face set ({', '.join(missing)} missing); build one with "
                            "`ganbrush data labels --faces FACES_DIR --out DIR`")
    images, labels = (np.load(f, mmap_mode="r", allow_pickle=False) for f in files)
    if images.ndim != 4 or images.shape[-1] != 3 or labels.shape != images.shape[:3]:
        raise LabelMapError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


class LabelledFaceDataset(torch.utils.data.Dataset):
    """Items ``{"image": float [3, H, W] in [-1, 1], "labels": int64 [H, W]}`` of a packed set;
    with ``xflip`` each item is mirrored with probability 1/2 (labels' sides swapped too)."""

    def __init__(self, path: str | os.PathLike, xflip: bool = False) -> None:
        self.path, self.xflip = Path(path), xflip
        images, _ = read_labelled_faces(self.path)
        self._len, self._arrays = len(images), None

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}  # workers map the files themselves

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            self._arrays = read_labelled_faces(self.path)
        images, labels = self._arrays
        image, lab = np.array(images[index]), np.array(labels[index])  # copies: the files are read-only maps
        if self.xflip and torch.rand(()) < 0.5:
            image, lab = image[:, ::-1], flip_labels(lab)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1
        return {"image": x, "labels": torch.from_numpy(np.ascontiguousarray(lab)).long()}


# -- the parts drawn from dlib's 68 landmarks ----------------------------------------------------------
#: Landmarks are rasterised this many times finer than the map and majority-voted down, so thin
#: parts (brows, lips) keep their area at 64 px instead of flickering with pixel centres.
SUPERSAMPLE = 4
#: Brows are a line of five points along their upper edge; the drawn band reaches this fraction
#: of the eye distance towards the eye.
BROW_THICKNESS = 0.16


def _polygon(points: list[np.ndarray] | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)  # 4 fractional bits


def _fill(canvas: np.ndarray, points: np.ndarray, value: int, hull: bool = False) -> None:
    import cv2

    pts = _polygon(points)
    if hull:
        pts = cv2.convexHull(pts)
    cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], int(value), lineType=cv2.LINE_8, shift=4)


def _scaled(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """Pixel-centre coordinates scaled by ``scale`` (centres at integers before and after)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
    return (lm + 0.5) * scale - 0.5


def landmark_parts(landmarks: np.ndarray, size: int, res: int | None = None) -> np.ndarray:
    """uint8 ``[size, size]``: the :data:`LANDMARK_CLASSES` drawn from 68 landmarks (iBUG order)
    given in the pixels of a ``res`` x ``res`` aligned face (default ``size``); 0 where no part is.
    Parts are painted in the order nose, brows, eyes, lips, inner mouth (later ones win)."""
    res = res or size
    fine = size * SUPERSAMPLE
    lm = _scaled(landmarks, fine / res)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    across = eye_r - eye_l  # the eye line, left to right in the picture
    canvas = np.zeros((fine, fine), np.uint8)
    c = CLASS_INDEX
    nose = [*lm[27:36], lm[27] - 0.1 * across, lm[27] + 0.1 * across, lm[31] - 0.07 * across, lm[35] + 0.07 * across]
    _fill(canvas, np.array(nose), c["nose"], hull=True)
    for name, line, eye in (("left_brow", lm[17:22], eye_l), ("right_brow", lm[22:27], eye_r)):
        down = eye - line.mean(0)
        down = down / max(np.hypot(*down), 1e-6) * BROW_THICKNESS * np.hypot(*across)
        _fill(canvas, np.concatenate([line, line[::-1] + down]), c[name])
    _fill(canvas, lm[36:42], c["left_eye"])
    _fill(canvas, lm[42:48], c["right_eye"])
    _fill(canvas, np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]]), c["upper_lip"])
    _fill(canvas, np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]]), c["lower_lip"])
    _fill(canvas, lm[60:68], c["inner_mouth"])
    return resize_labels(canvas, size)


def face_hull(landmarks: np.ndarray, size: int, res: int | None = None) -> np.ndarray:
    """float32 ``[size, size]`` in {0, 1}: the convex hull of the jaw line and the brows (the
    face from brows to chin), from landmarks in the pixels of a ``res`` x ``res`` face."""
    res = res or size
    canvas = np.zeros((size, size), np.uint8)
    _fill(canvas, _scaled(landmarks, size / res)[:27], 1, hull=True)
    return canvas.astype(np.float32)


def compose(base: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """The full map: ``base`` (background / skin / hair, e.g. the parser's) with the landmark
    ``parts`` (non-zero pixels) painted over it."""
    base, parts = check_labels(base), check_labels(parts)
    return np.where(parts > 0, parts, base).astype(np.uint8)


# -- edits of a map ----------------------------------------------------------------------------------
def scale_parts(labels: np.ndarray, classes: tuple[str, ...], sx: float, sy: float = 1.0,
                fill: str = "skin") -> np.ndarray:
    """``labels`` with the pixels of ``classes`` scaled by ``sx`` (across) and ``sy`` (down)
    about their common centre, e.g. a mouth widened 30 %: ``scale_parts(m, MOUTH, 1.3)``. Where
    the parts were and are no more becomes ``fill``."""
    import cv2

    labels = check_labels(labels)
    ids = [CLASS_INDEX[c] for c in classes]
    part = np.isin(labels, ids)
    if not part.any():
        raise LabelMapError(f"the map has none of {', '.join(classes)} to scale")
    ys, xs = np.nonzero(part)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    m = np.array([[sx, 0, cx * (1 - sx)], [0, sy, cy * (1 - sy)]], np.float64)
    h, w = labels.shape
    moved = cv2.warpAffine(np.where(part, labels, 255).astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                           borderValue=255)
    out = np.where(part, CLASS_INDEX[fill], labels)
    return np.where(moved != 255, moved, out).astype(np.uint8)


MOUTH: tuple[str, ...] = ("upper_lip", "lower_lip", "inner_mouth")
EYES: tuple[str, ...] = ("left_eye", "right_eye")
BROWS: tuple[str, ...] = ("left_brow", "right_brow")


def scale_each(labels: np.ndarray, classes: tuple[str, ...], sx: float, sy: float | None = None) -> np.ndarray:
    """:func:`scale_parts` for each of ``classes`` about its own centre (eyes grow in place, not apart)."""
    for c in classes:
        if np.isin(labels, CLASS_INDEX[c]).any():
            labels = scale_parts(labels, (c,), sx, sx if sy is None else sy)
    return labels


def to_skin(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """``labels`` with ``classes`` painted over as skin (e.g. brows removed)."""
    labels = check_labels(labels)
    return np.where(np.isin(labels, [CLASS_INDEX[c] for c in classes]), CLASS_INDEX["skin"], labels).astype(np.uint8)


#: One-click edits of a map (uint8 ``[s, s]`` -> the same): the app's presets, the README's figure.
PRESETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "widen mouth": lambda m: scale_parts(m, MOUTH, 1.3),
    "narrow mouth": lambda m: scale_parts(m, MOUTH, 0.75),
    "bigger eyes": lambda m: scale_each(m, EYES, 1.3),
    "open eyes": lambda m: scale_each(m, EYES, 1.1, 1.6),
    "remove brows": lambda m: to_skin(m, BROWS),
}
