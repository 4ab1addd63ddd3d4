"""Find faces in a photo, align one to the generator's framing, and paste an edited face back.

Coordinates: photo and aligned pixels are (x right, y down) with pixel centres at integer
coordinates, as dlib and OpenCV use them; so a ``W x H`` picture spans ``[-0.5, W - 0.5] x
[-0.5, H - 0.5]``. Boxes and quads are outer edges in that system (a 1-pixel box around pixel
``(x, y)`` is ``(x - 0.5, y - 0.5, x + 0.5, y + 0.5)``).

Photos are uint8 ``[H, W, 3]`` RGB (see :func:`inversion.photos.load_photo`); aligned faces are
uint8 ``[res, res, 3]`` RGB.

Framings (the oriented square that is cut out; both use the same construction, only the constants
differ, see :data:`FRAMINGS`):

- ``"ganbrush"`` (default): the framing the shipped generators were trained with
  (``ganbrush_core.faces``: eye centre at about (0.50, 0.275) of the side, eye distance about
  0.40 of the side, i.e. eyebrows to chin).
- ``"ffhq"``: the FFHQ recipe (a looser crop with hair and neck), for FFHQ-trained generators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

import cv2
import numpy as np

from ganbrush_core.checks import check_float
from inversion import dlib_models

Detector = Literal["hog", "cnn"]
Framing = Literal["ganbrush", "ffhq"]

# Detection works on a copy whose long side is at most DETECT_SIDE (large photos are shrunk, so
# time and memory stay bounded), and dlib upsamples small photos towards that size (dlib's HOG
# window is 80 px and the CNN's about 40-80 px, so small faces need it). The CNN is ~20x slower
# per pixel than HOG on a CPU, hence its smaller working size.
DETECT_SIDE: dict[str, int] = {"hog": 1600, "cnn": 1000}
# Each upsample level doubles both sides: beyond this, the work image would not fit the bound.
MAX_UPSAMPLE = 3
MAX_WORK_PIXELS = 16_000_000

# iBUG 300-W 68-point indices (dlib's shape_predictor_68_face_landmarks).
_LEFT_EYE = slice(36, 42)  # the eye on the left of the picture
_RIGHT_EYE = slice(42, 48)
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54

# A cubic warp that shrinks aliases: any shrinking beyond this factor is done by an area
# (antialiasing) resize first, so the warp itself only rotates, shifts and slightly rescales.
_MAX_WARP_SHRINK = 1.0
# align_face warps a shrinking face at up to this many times the output size (and at most
# _SUPERSAMPLE_SIDE px) and area-averages down: one resampling at the output scale would blur or
# shift edges by a fraction of a pixel.
_SUPERSAMPLE = 4
_SUPERSAMPLE_SIDE = 1024


class NoFaceError(ValueError):
    """No face was found in a photo."""


@dataclass(frozen=True)
class QuadRecipe:
    """An oriented square from eye centres ``e`` (mean of each eye's six points) and mouth corners.

    With ``eye_to_eye = e_right - e_left`` and ``eye_to_mouth = mouth_avg - eye_avg``, the square's
    x axis is ``eye_to_eye`` minus ``eye_to_mouth`` turned a quarter left (so both the eye line
    and the face's vertical axis decide the roll), its side is
    ``max(eye_scale * |eye_to_eye|, mouth_scale * |eye_to_mouth|)`` (the eye term for frontal
    faces, the mouth term when the eyes are foreshortened by a turned head), and its centre is
    ``eye_avg + mouth_offset * eye_to_mouth``.
    """

    eye_scale: float
    mouth_scale: float
    mouth_offset: float


# ffhq: FFHQ's constants (half side max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|), centre 0.1 down).
# ganbrush: eye distance 1/2.5 = 0.40 of the side; the centre sits 0.225 side below the eyes, so
# the eyes land at 0.275 of the side: 0.225 * 2.5 = 0.5625 eye distances, and eye_to_mouth is
# about 1.03 eye distances on the training faces (ganbrush_core.faces.GEOMETRY) -> 0.55. The mouth
# term (2.45 |eye_to_mouth|, i.e. 2.52 eye distances) only takes over for turned heads.
FRAMINGS: dict[str, QuadRecipe] = {
    "ganbrush": QuadRecipe(eye_scale=2.5, mouth_scale=2.45, mouth_offset=0.55),
    "ffhq": QuadRecipe(eye_scale=4.0, mouth_scale=3.6, mouth_offset=0.1),
}


@dataclass(frozen=True)
class Face:
    """One detected face. ``box``: ``(left, top, right, bottom)`` outer edges in photo px;
    ``landmarks``: float ``[68, 2]`` (x, y) photo px (iBUG 300-W order); ``score``: the detector's
    confidence (HOG: SVM margin; CNN: MMOD confidence; higher is surer)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return (right - left) * (bottom - top)


@dataclass(frozen=True)
class AlignedFace:
    """An aligned face and where it came from.

    ``image``: uint8 ``[res, res, 3]``. ``quad``: float ``[4, 2]`` photo-px corners of the square
    that was cut out, in the order top-left, bottom-left, bottom-right, top-right of the aligned
    image (outer edges). ``framing``: the :data:`Framing` used.
    """

    image: np.ndarray
    quad: np.ndarray
    res: int
    framing: str
    face: Face

    @cached_property
    def to_photo(self) -> np.ndarray:
        """float64 ``[3, 3]`` affine: aligned px (homogeneous, column vector) -> photo px."""
        return _quad_affine(self.quad, self.res)

    @cached_property
    def from_photo(self) -> np.ndarray:
        """float64 ``[3, 3]`` affine: photo px -> aligned px (the inverse of :attr:`to_photo`)."""
        return np.linalg.inv(self.to_photo)

    @property
    def scale(self) -> float:
        """Photo pixels per aligned pixel."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]) / self.res)


def _quad_affine(quad: np.ndarray, res: int) -> np.ndarray:
    """``[3, 3]`` affine from the pixels of a ``res`` x ``res`` image to the quad's coordinates."""
    tl, bl, _, tr = quad
    ex, ey = (tr - tl) / res, (bl - tl) / res  # one aligned pixel along x and y
    origin = tl + 0.5 * (ex + ey)  # the centre of aligned pixel (0, 0)
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])


def _check_photo(photo: np.ndarray) -> np.ndarray:
    if not (isinstance(photo, np.ndarray) and photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3):
        shape = getattr(photo, "shape", None)
        raise ValueError(f"expected a uint8 [H, W, 3] RGB photo, got {getattr(photo, 'dtype', type(photo))} {shape}; "
                         "read it with inversion.photos.load_photo")
    return np.ascontiguousarray(photo)


def _check_choice(value: str, options: object, what: str) -> str:
    allowed = get_args(options)
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _work_image(photo: np.ndarray, detector: str, upsample: int | None) -> tuple[np.ndarray, float, int]:
    """The picture dlib scans, photo px per work px, and dlib's upsample count."""
    h, w = photo.shape[:2]
    target = DETECT_SIDE[detector]
    factor = 1.0
    work = photo
    if max(h, w) > target:
        factor = max(h, w) / target
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        work = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        factor = w / size[0]
    if upsample is None:
        upsample = 0
        while upsample < MAX_UPSAMPLE and max(work.shape[:2]) * 2 ** (upsample + 1) <= target:
            upsample += 1
    elif upsample < 0 or work.shape[0] * work.shape[1] * 4**upsample > MAX_WORK_PIXELS:
        raise ValueError(f"upsample={upsample} is out of range for a {w}x{h} photo (the scan may cover at most "
                         f"{MAX_WORK_PIXELS / 1e6:.0f} Mpx): use a smaller value, or None to choose it from the size")
    return work, factor, upsample


def _to_photo_px(v: float, factor: float) -> float:
    """A work-image coordinate (pixel centres at integers) -> photo coordinate."""
    return (v + 0.5) * factor - 0.5


def _detect_locked(photo: np.ndarray, work: np.ndarray, factor: float, upsample: int, detector: str) -> list[Face]:
    """The detection and landmarks of :func:`detect_faces`; call with ``dlib_models.DLIB_LOCK`` held."""
    if detector == "hog":
        rects, scores, _ = dlib_models.hog_detector().run(work, upsample, 0.0)
    else:
        found = dlib_models.cnn_detector()(work, upsample)
        rects, scores = [d.rect for d in found], [d.confidence for d in found]
    if not rects:
        raise NoFaceError("no face found in the photo; use a photo with a clearly visible, roughly frontal face "
                          "(or try --detector cnn)")
    import dlib

    predictor = dlib_models.shape_predictor68()
    faces = []
    for rect, score in zip(rects, scores):
        box = (_to_photo_px(rect.left() - 0.5, factor), _to_photo_px(rect.top() - 0.5, factor),
               _to_photo_px(rect.right() + 0.5, factor), _to_photo_px(rect.bottom() + 0.5, factor))
        # dlib rectangles are inclusive pixel indices: the outer edges shrink by half a pixel.
        full = dlib.rectangle(round(box[0] + 0.5), round(box[1] + 0.5), round(box[2] - 0.5), round(box[3] - 0.5))
        shape = predictor(photo, full)
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        faces.append(Face(box=tuple(float(v) for v in box), landmarks=landmarks, score=float(score)))
    return faces


def detect_faces(photo: np.ndarray, detector: Detector = "hog", upsample: int | None = None) -> list[Face]:
    """Every face in ``photo`` (uint8 ``[H, W, 3]`` RGB), the largest box first.

    ``detector``: ``"hog"`` (dlib's HOG + SVM, fast, frontal faces) or ``"cnn"`` (dlib's MMOD CNN,
    ~20x slower on a CPU, finds turned and tilted faces too). ``upsample``: how many times dlib
    doubles the picture before scanning (finds smaller faces, 4x the work each); ``None`` picks it
    from the photo size. Photos larger than :data:`DETECT_SIDE` are scanned at that size and the
    boxes mapped back; the 68 landmarks are always found at full resolution.
    Raises :class:`NoFaceError` when there is none. Safe to call from several threads.
    """
    photo = _check_photo(photo)
    _check_choice(detector, Detector, "detector")
    work, factor, upsample = _work_image(photo, detector, upsample)
    with dlib_models.DLIB_LOCK:
        faces = _detect_locked(photo, work, factor, upsample, detector)
    return sorted(faces, key=lambda f: f.area, reverse=True)


def pick_face(faces: list[Face], index: int, name: str = "face", error: type[ValueError] = ValueError) -> Face:
    """``faces[index]`` (faces largest first, from :func:`detect_faces`), or ``error`` saying which
    numbers exist; ``name`` is how the caller's user gives the index (e.g. ``"--face"``)."""
    if not 0 <= index < len(faces):
        raise error(f"{name} {index} is out of range: {len(faces)} face(s) found, numbered 0..{len(faces) - 1}")
    return faces[index]


def face_quad(landmarks: np.ndarray, framing: Framing = "ganbrush") -> np.ndarray:
    """float64 ``[4, 2]`` photo-px corners (top-left, bottom-left, bottom-right, top-right) of the
    oriented square of ``framing`` for 68 landmarks (see :class:`QuadRecipe`)."""
    recipe = FRAMINGS[_check_choice(framing, Framing, "framing")]
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
    eye_left, eye_right = lm[_LEFT_EYE].mean(0), lm[_RIGHT_EYE].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[_MOUTH_LEFT] + lm[_MOUTH_RIGHT]) / 2 - eye_avg
    # (dx, dy) -> (-dy, dx) turns a quarter clockwise on screen (y down): a downward eye_to_mouth
    # becomes a leftward vector, so subtracting it adds to the left-to-right eye line.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    norm = np.hypot(*x)
    if not norm > 1e-6:
        raise ValueError("degenerate landmarks (eyes and mouth coincide); detect the face again")
    half = max(recipe.eye_scale * np.hypot(*eye_to_eye), recipe.mouth_scale * np.hypot(*eye_to_mouth)) / 2
    x = x / norm * half
    y = np.array([-x[1], x[0]])  # x turned the same way: pointing down the face
    c = eye_avg + recipe.mouth_offset * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _pad_reflect_blur(image: np.ndarray, pad: int) -> np.ndarray:
    from PIL import Image

    from ganbrush_core.faces import (
        pad_mirrored,  # mirrored border fading into a blur (shared with the data set builder)
    )

    return np.asarray(pad_mirrored(Image.fromarray(image), pad), dtype=np.uint8)


def align_face(photo: np.ndarray, face: Face, res: int, framing: Framing = "ganbrush") -> AlignedFace:
    """Cut the oriented square of ``framing`` around ``face`` out of ``photo`` and resample it to
    uint8 ``[res, res, 3]``. Parts of the square outside the photo are filled with a mirror image
    of the border fading into a blur. Large faces are area-shrunk first, so the result is not
    aliased; only the face's neighbourhood of the photo is processed (bounded memory)."""
    photo = _check_photo(photo)
    if not (isinstance(res, int) and res >= 4):
        raise ValueError(f"res must be an integer >= 4, got {res!r}")
    quad = face_quad(face.landmarks, framing)
    h, w = photo.shape[:2]
    side = float(np.linalg.norm(quad[3] - quad[0]))
    supersample = int(max(1, min(_SUPERSAMPLE, side / res, _SUPERSAMPLE_SIDE / res)))
    warp_res = res * supersample
    shrink = max(1.0, side / warp_res / _MAX_WARP_SHRINK)
    # The photo region the square needs, plus the cubic warp's support (2 px after shrinking),
    # clipped to the photo.
    margin = math.ceil(3 * shrink)
    lo = np.floor(quad.min(0)).astype(int) - margin
    hi = np.ceil(quad.max(0)).astype(int) + margin + 1
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError("the face lies outside the photo; detect faces on this same photo")
    crop = photo[y0:y1, x0:x1]
    if shrink > 1.0:
        size = (max(1, round(crop.shape[1] / shrink)), max(1, round(crop.shape[0] / shrink)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    sx, sy = (x1 - x0) / crop.shape[1], (y1 - y0) / crop.shape[0]  # photo px per crop px
    to_crop = np.array([[1 / sx, 0, (0.5 - x0) / sx - 0.5], [0, 1 / sy, (0.5 - y0) / sy - 0.5], [0, 0, 1]])
    quad_crop = (to_crop[:2, :2] @ quad.T).T + to_crop[:2, 2]
    overflow = max(0.0, *(-quad_crop.min(0) - 0.5), *(quad_crop.max(0) - np.array(crop.shape[1::-1]) + 0.5))
    pad = math.ceil(overflow) + 3 if overflow > 0 else 0
    if pad:
        crop = _pad_reflect_blur(np.ascontiguousarray(crop), pad)
        quad_crop = quad_crop + pad
    out = cv2.warpAffine(crop, _quad_affine(quad_crop, warp_res)[:2], (warp_res, warp_res),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    if supersample > 1:
        out = cv2.resize(out, (res, res), interpolation=cv2.INTER_AREA)
    return AlignedFace(image=out, quad=quad, res=res, framing=framing, face=face)


#: The native crop's side is capped (a 50 MP photo's face may be several thousand px wide): it is
#: a view for measuring and for region fills, not the path edits take to the photo.
MAX_NATIVE_SIDE = 2048


def native_res(aligned: AlignedFace, max_side: int = MAX_NATIVE_SIDE) -> int:
    """The side (px) of ``aligned``'s square at the photo's own scale, at most ``max_side``."""
    return int(max(4, min(max_side, round(aligned.scale * aligned.res))))


def align_native(photo: np.ndarray, aligned: AlignedFace, max_side: int = MAX_NATIVE_SIDE) -> AlignedFace:
    """The same square as ``aligned`` (same quad, so ``to_photo``/``from_photo`` relate the two
    and the photo) cut out at the photo's own scale: uint8 ``[n, n, 3]`` with ``n`` =
    :func:`native_res`. Where the face is larger than ``max_side``, it is shrunk to that."""
    return align_face(photo, aligned.face, native_res(aligned, max_side), aligned.framing)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def paste_region(shape: tuple[int, ...], aligned: AlignedFace) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (half-open): the photo pixels the aligned square touches in a photo of
    ``shape``, or None if none."""
    h, w = shape[:2]
    lo = np.floor(aligned.quad.min(0)).astype(int)
    hi = np.ceil(aligned.quad.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def check_feather(feather: object) -> float:
    """The paste-back blend width (a fraction of the face side) as a float; :class:`ValueError`
    unless it is finite and in (0, 0.5]."""
    return check_float("feather (a fraction of the face side)", feather, 0, 0.5, lo_open=True)


def region_weights(region: tuple[int, int, int, int], aligned: AlignedFace, feather: float) -> np.ndarray:
    """float32 ``[y1 - y0, x1 - x0]`` weights on the photo ``region`` ``(x0, y0, x1, y1)``: 1 well
    inside the aligned square, a smooth ramp ``feather`` (fraction of the side) wide inside its
    edge, exactly 0 on and outside it."""
    check_feather(feather)
    x0, y0, x1, y1 = region
    # Broadcast rows and columns (float32), so a large region costs a few float32 planes.
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    m = (aligned.from_photo / aligned.res).astype(np.float32)
    # Position in the square as a fraction of its side, 0..1 between opposite edges.
    u = m[0, 0] * xx + m[0, 1] * yy + (m[0, 2] + np.float32(0.5 / aligned.res))
    v = m[1, 0] * xx + m[1, 1] * yy + (m[1, 2] + np.float32(0.5 / aligned.res))
    edge = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v))
    return _smoothstep(edge / np.float32(feather)).astype(np.float32, copy=False)


def paste_mask(shape: tuple[int, ...], aligned: AlignedFace, feather: float = 0.1) -> np.ndarray:
    """float32 ``[H, W]`` weight map in photo px for a photo of ``shape`` (``(H, W, ...)``): 1
    where :func:`paste_back` shows the face, 0 where it leaves the photo untouched, a smooth ramp
    ``feather`` (fraction of the face side) wide inside the edge of the aligned square."""
    mask = np.zeros(shape[:2], dtype=np.float32)
    region = paste_region(shape, aligned)
    if region is not None:
        x0, y0, x1, y1 = region
        mask[y0:y1, x0:x1] = region_weights(region, aligned, feather)
    return mask


def paste_back(photo: np.ndarray, aligned: AlignedFace, face_image: np.ndarray, feather: float = 0.1) -> np.ndarray:
    """Put ``face_image`` (uint8 ``[r, r, 3]``, any ``r``: e.g. an edited version of
    ``aligned.image``) back where ``aligned`` was cut from ``photo``, blended through the
    feathered mask of :func:`paste_mask`. Returns a new uint8 photo; every pixel whose weight is 0
    is bit-identical to ``photo``."""
    photo = _check_photo(photo)
    face_image = np.asarray(face_image)
    if face_image.dtype != np.uint8 or face_image.ndim != 3 or face_image.shape[2] != 3 or \
            face_image.shape[0] != face_image.shape[1]:
        raise ValueError(f"face_image must be a square uint8 [r, r, 3] RGB image, got {face_image.dtype} "
                         f"{face_image.shape}")
    out = photo.copy()
    region = paste_region(photo.shape, aligned)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    weight = region_weights(region, aligned, feather)
    r = face_image.shape[0]
    side = aligned.scale * aligned.res  # face side in photo px
    if r / side > _MAX_WARP_SHRINK:  # the face is smaller in the photo: shrink it first (antialias)
        r_small = max(4, math.ceil(side * _MAX_WARP_SHRINK))
        face_image = cv2.resize(face_image, (r_small, r_small), interpolation=cv2.INTER_AREA)
        r = r_small
    # photo px (region-relative) -> face_image px: photo -> aligned px -> face_image px.
    aligned_to_face = np.array([[r / aligned.res, 0, 0.5 * r / aligned.res - 0.5],
                                [0, r / aligned.res, 0.5 * r / aligned.res - 0.5], [0, 0, 1]])
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    region_to_face = aligned_to_face @ aligned.from_photo @ shift
    warped = cv2.warpAffine(np.ascontiguousarray(face_image), region_to_face[:2], (x1 - x0, y1 - y0),
                            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    base = photo[y0:y1, x0:x1].astype(np.float32)
    blend = base + (warped.astype(np.float32) - base) * weight[..., None]
    out[y0:y1, x0:x1] = np.where(weight[..., None] > 0, np.clip(np.round(blend), 0, 255).astype(np.uint8),
                                 photo[y0:y1, x0:x1])
    return out


def paste_inside(photo: np.ndarray, aligned: AlignedFace, face_image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Put ``face_image`` (uint8 ``[r, r, 3]``, any ``r``, in ``aligned``'s frame) back into
    ``photo`` exactly on ``region`` (bool ``[H, W]`` photo px, True = replace): no feathering,
    so every pixel outside ``region`` is bit-identical to ``photo``. Used for regenerated regions,
    whose fills already blend into their border."""
    photo = _check_photo(photo)
    region = np.asarray(region, dtype=bool)
    if region.shape != photo.shape[:2]:
        raise ValueError(f"region must be bool [H, W] of the photo's size {photo.shape[:2]}, got {region.shape}")
    out = photo.copy()
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    if rows.size == 0:
        return out
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    r = face_image.shape[0]
    aligned_to_face = np.array([[r / aligned.res, 0, 0.5 * r / aligned.res - 0.5],
                                [0, r / aligned.res, 0.5 * r / aligned.res - 0.5], [0, 0, 1]])
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    warped = cv2.warpAffine(np.ascontiguousarray(face_image), (aligned_to_face @ aligned.from_photo @ shift)[:2],
                            (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    inside = region[y0:y1, x0:x1]
    out[y0:y1, x0:x1][inside] = warped[inside]
    return out
