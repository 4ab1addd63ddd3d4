"""Identity distance between aligned faces: dlib's face-recognition descriptor (128-d).

Descriptors of the same person are usually closer than 0.6 (Euclidean), different people
farther; lower distance = better identity preservation (the inversion benchmark's identity column).

Aligned faces are uint8 ``[r, r, 3]`` RGB in a known framing (:mod:`inversion.align`), often
tiny (64 px). No detection is run on them: the face box of the framing is known, so each face
is upsampled to :data:`WORK_SIZE` px (Lanczos), given a mirrored border (so dlib's own 150 px
face chip, which reaches beyond the face, never sees black), located with dlib's 5-point
predictor inside the known box, and described by dlib's ResNet.
"""

from __future__ import annotations

import cv2
import numpy as np

from inversion import dlib_models
from inversion.align import Framing

WORK_SIZE = 256
DESCRIPTOR_DIM = 128
# Where dlib's HOG detector puts its box on a face aligned in each framing, as fractions of the
# side (left, top, right, bottom): measured on the photos in ../shared/data/photos aligned at
# 256 px; dlib's landmark predictors are trained on boxes like these.
FACE_BOX: dict[str, tuple[float, float, float, float]] = {
    "ganbrush": (0.07, 0.07, 0.91, 0.91),
    "ffhq": (0.20, 0.30, 0.79, 0.88),
}
_BORDER = 0.25  # mirrored border, fraction of WORK_SIZE on each side


def face_descriptor(image: np.ndarray, framing: Framing = "ganbrush") -> np.ndarray:
    """float32 ``[128]`` dlib face descriptor of an aligned face (uint8 ``[r, r, 3]`` RGB in
    ``framing``, any ``r``)."""
    import dlib

    if framing not in FACE_BOX:
        raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FACE_BOX)}")
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] != a.shape[1] or a.shape[0] < 8:
        raise ValueError(f"expected an aligned face as a square uint8 [r, r, 3] RGB image (r >= 8), got {a.dtype} "
                         f"{a.shape}; align it with inversion.align.align_face")
    interp = cv2.INTER_LANCZOS4 if a.shape[0] < WORK_SIZE else cv2.INTER_AREA
    work = cv2.resize(np.ascontiguousarray(a), (WORK_SIZE, WORK_SIZE), interpolation=interp)
    border = round(_BORDER * WORK_SIZE)
    work = cv2.copyMakeBorder(work, border, border, border, border, cv2.BORDER_REFLECT_101)
    left, top, right, bottom = (round(border + f * WORK_SIZE) for f in FACE_BOX[framing])
    with dlib_models.DLIB_LOCK:
        shape = dlib_models.shape_predictor5()(work, dlib.rectangle(left, top, right, bottom))
        descriptor = dlib_models.face_encoder().compute_face_descriptor(work, shape)
    return np.asarray(descriptor, dtype=np.float32)


def _as_descriptor(x: np.ndarray, framing: Framing) -> np.ndarray:
    x = np.asarray(x)
    if x.shape == (DESCRIPTOR_DIM,) and np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    return face_descriptor(x, framing)


def identity_distance(a: np.ndarray, b: np.ndarray, framing: Framing = "ganbrush") -> float:
    """Euclidean distance between the dlib descriptors of two aligned faces (lower = more alike;
    below about 0.6 dlib calls it the same person). ``a`` and ``b`` are aligned uint8 faces, or
    float ``[128]`` descriptors from :func:`face_descriptor` (to describe a target once)."""
    return float(np.linalg.norm(_as_descriptor(a, framing) - _as_descriptor(b, framing)))
