"""Regenerated regions at native resolution: contextual residual aggregation (the idea of HiFill,
Yi et al., CVPR 2020, implemented from the paper's description).

An inpainter fills the hole at low resolution (64 px for the shipped models) while the photo has
0.3-50 MP. Upsampling the low fill alone leaves a blurry patch in a sharp photo. Here the missing
high frequencies are borrowed from the photo itself:

1. The known pixels' high-pass residual ``R = image - lowpass(image)``, the low-pass a Gaussian
   at the low resolution's scale over the known pixels alone (normalised convolution), holds the
   detail the low resolution cannot carry; it is 0 in the hole, whose content is never read, and
   the fill never enters it (a fill darker than the photo would otherwise leave a light halo in
   the known residual next to the border, carried into the hole as a frame).
2. The frame is cut into square cells (``patch_grid`` along the longer side). Every cell is
   described by its neighbourhood in the LOW-resolution completed image (``low_fill``), so the
   hole cells are described by what the inpainter put there.
3. Cells whose neighbourhood is (nearly) all known are sources. Each hole cell attends to its
   ``top_k`` most similar sources (cosine similarity minus a small distance penalty, softmax
   with ``temperature``).
4. A hole cell's residual is the attention-weighted sum of the sources' native residual windows
   (2x the cell, overlapping), each made zero-mean under the blending window (no level of its
   own: no cell-sized blotches) and scaled down to the detail the photo carries at the hole
   cell's low-resolution contrast (a fitted ``residual RMS ~ a + b * contrast``: cosine
   similarity ignores magnitude, and a faint fill would otherwise get eyelashes or lip creases
   at full strength, repeated cell after cell), rescaled to the sources' energy (averaging
   unrelated textures cancels them), overlap-added with a variance-preserving window (Heitz & Neyret's
   histogram-preserving blending for zero-mean signals), and added to ``up(low_fill)``.
5. Within ~1.5 px of the hole's border the known pixels' own residual, spread inward, takes over
   (thin strokes are mostly border). Pixels outside the hole are the input's, bit for bit.
6. The base ``up(low_fill)`` is brought to the photo's level at the hole's border: every low pixel
   the hole touches was regenerated, so along the native border the fill is a guess beside the
   photo's own pixels, a tonal step around the whole region. Their mismatch, measured on the
   known pixels next to the border, is continued into the hole (a membrane) and faded out over
   0.5-2 low pixels, so the inpainter's tones inside are kept.

Conventions (edge-of-API, like files and the pipeline's faces): images are uint8 ``[H, W, 3]`` RGB;
masks bool ``[H, W]`` with **True = hole** (regenerate), the polarity of every ganbrush mask.
Memory is O(H * W): about 40 bytes per pixel at most (455 MB peak at 12 MP with a 47 % hole);
the attention matrix lives on the cell grid (at most ``patch_grid**2`` squared entries).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from ganbrush_core.images import uint8_to_float

__all__ = ["LowInpainter", "downsample_with_mask", "inpaint_native", "low_size_for", "method_inpainter", "upsample",
           "upsample_plain", "upscale_fill"]

# (uint8 [h, w, 3] RGB, bool [h, w] True = hole) -> completed uint8 or float [h, w, 3] in 0..255.
LowInpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]

# A low fill whose aspect ratio differs more than this from the photo's is a caller's mistake.
_ASPECT_TOLERANCE = 0.05
# The residual's low-pass: a Gaussian of this many LOW pixels (gain 0.45 at the low Nyquist limit,
# about what bicubic upsampling of an area-downsampled image keeps there), applied at up to
# _MID_FACTOR x the low resolution.
_LOWPASS_SIGMA = 0.42
_MID_FACTOR = 4
# Rows per strip when the native residual is computed (bounds the temporaries).
_STRIP_ROWS = 512
# Below this blurred share of known pixels a low-pass cell has no known pixel in reach.
_MIN_KNOWN_WEIGHT = 1e-6
# The fill meets the photo's level at the hole's border; the correction is whole up to the first
# and gone from the second distance into the hole (LOW pixels): the ring the inpainter regenerated
# that the photo keeps is at most one low pixel wide.
_LEVEL_FADE = (0.5, 2.0)
# The mismatch is smoothed along the border over a Gaussian of this many LOW pixels (the photo's
# texture averages out; the level stays local).
_LEVEL_SMOOTH = 0.25
# Below this spread of the source cells' low-resolution contrast (grey levels) the photo shows no
# relation between structure and fine detail to fit; borrowed residuals keep their amplitude.
_MIN_CONTRAST_SPREAD = 1.0


# -- input checks -------------------------------------------------------------------------------------
def _check_image_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask as a bool array, after checking both; raises ``ValueError`` with what to do."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {list(image.shape)}")
    m = np.asarray(mask)
    if m.shape != image.shape[:2]:
        raise ValueError(f"mask is {list(m.shape)} but the image is {list(image.shape[:2])}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask must be bool (True = hole) or 0/1")
        m = m.astype(bool)
    return np.ascontiguousarray(m)


def _check_inputs(image: np.ndarray, mask: np.ndarray, low_fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = _check_image_mask(image, mask)
    low = np.asarray(low_fill)
    if low.ndim != 3 or low.shape[2] != 3:
        raise ValueError(f"low_fill must be [h, w, 3] RGB, got {list(low.shape)}")
    h, w = low.shape[:2]
    H, W = image.shape[:2]
    if h > H or w > W or h < 1 or w < 1:
        raise ValueError(f"low_fill ({w}x{h}) must not be larger than the image ({W}x{H})")
    if abs((w / h) / (W / H) - 1) > _ASPECT_TOLERANCE and abs(w - W * h / H) > 1:
        raise ValueError(f"low_fill is {w}x{h} but the image is {W}x{H}: the low fill must show the same frame")
    if low.dtype == np.uint8:
        low = low.astype(np.float32)
    elif np.issubdtype(low.dtype, np.floating):
        low = low.astype(np.float32)
        if low.min(initial=0) < -0.5 or low.max(initial=0) > 255.5:
            raise ValueError("a float low_fill must use the uint8 scale 0..255 (convert [-1, 1] with (x + 1) * 127.5)")
    else:
        raise ValueError(f"low_fill must be uint8 or float in 0..255, got {low.dtype}")
    return m, np.ascontiguousarray(low)


# -- resampling ---------------------------------------------------------------------------------------
def _cubic_weights(n_in: int, n_out: int) -> sparse.csr_matrix:
    """``[n_out, n_in]`` sparse bicubic interpolation (Keys, a = -0.5, as PIL's BICUBIC) with pixel
    centres aligned like ``cv2.resize`` (half-pixel) and replicated borders; 4 taps per row.

    Exact in float: OpenCV's warp/remap quantise positions to 1/32 px, which at 60x upsampling
    would leave 2-px steps in smooth fills."""
    a = -0.5
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src).astype(np.int64)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    t = np.abs(src[:, None] - taps)
    w = np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                 np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))
    rows = np.repeat(np.arange(n_out), 4)
    cols = np.clip(taps, 0, n_in - 1).reshape(-1)
    return sparse.csr_matrix((w.reshape(-1).astype(np.float32), (rows, cols)), shape=(n_out, n_in))


class _Upsampler:
    """Regions of the bicubic upsampling of ``low`` (float32 ``[h, w, C]``) to ``(H, W)``. Computing
    only a region keeps memory bounded: a hole in a 50 MP photo never needs the whole frame."""

    def __init__(self, low: np.ndarray, full: tuple[int, int]) -> None:
        self.low = low.reshape(low.shape[0], low.shape[1], -1).astype(np.float32)
        self.ky = _cubic_weights(low.shape[0], full[0])
        self.kx = _cubic_weights(low.shape[1], full[1])

    def region(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        h, w, c = self.low.shape
        ky, kx = self.ky[rows[0]:rows[1]], self.kx[cols[0]:cols[1]]
        tmp = (ky @ self.low.reshape(h, w * c)).reshape(-1, w, c)  # [rows, w, C]
        n = tmp.shape[0]
        out = kx @ tmp.transpose(1, 0, 2).reshape(w, n * c)  # [cols, rows * C]
        return np.ascontiguousarray(out.reshape(-1, n, c).transpose(1, 0, 2), dtype=np.float32)


class _FillBase:
    """Regions of the base a hole's residual is added to: the bicubic upsampling of the low fill,
    plus that of a ``level`` correction on its own (finer) grid where one is given."""

    def __init__(self, low: np.ndarray, full: tuple[int, int], level: np.ndarray | None = None) -> None:
        self.parts = [_Upsampler(low, full)] + ([] if level is None else [_Upsampler(level, full)])

    def region(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        out = self.parts[0].region(rows, cols)
        for part in self.parts[1:]:
            out += part.region(rows, cols)
        return out


def upsample(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 ``[H, W, C]``: the bicubic upsampling of ``low`` ``[h, w, C]`` to ``size`` ``(H, W)``
    that :func:`upscale_fill` uses for its base."""
    return _Upsampler(np.asarray(low, dtype=np.float32), size).region((0, size[0]), (0, size[1]))


def upsample_plain(image: np.ndarray, mask: np.ndarray, low_fill: np.ndarray) -> np.ndarray:
    """The baseline without residual aggregation: ``image`` outside ``mask``, the bicubic upsampling
    of ``low_fill`` inside (same conventions as :func:`upscale_fill`)."""
    hole, low = _check_inputs(image, mask, low_fill)
    out = image.copy()
    if hole.any():
        ys, xs = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
        rows, cols = (int(ys[0]), int(ys[-1]) + 1), (int(xs[0]), int(xs[-1]) + 1)
        region = _Upsampler(low, image.shape[:2]).region(rows, cols)
        inside = hole[rows[0]:rows[1], cols[0]:cols[1]]
        out[rows[0]:rows[1], cols[0]:cols[1]][inside] = np.clip(np.rint(region[inside]), 0, 255).astype(np.uint8)
    return out


# -- the cell grid --------------------------------------------------------------------------------------
def _window_kernel(cell: int) -> np.ndarray:
    """1-D weights over a window of 2 cells for windows at a stride of one cell.

    sin^2 windows at this stride sum to 1; dividing by sqrt(sum of squares) instead makes the sum of
    two unrelated zero-mean residuals keep their variance (a plain cross-fade halves it mid-way)."""
    u = np.arange(2 * cell, dtype=np.float64)
    w = np.sin(np.pi * (u + 0.5) / (2 * cell)) ** 2
    partner = np.roll(w, cell)  # the overlapping neighbour's weight at the same pixel
    return (w / np.sqrt(w**2 + partner**2)).astype(np.float32)


def _cell_layout(n: int, cell: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of length ``n``: nominal window starts (cell i's window is 2 cells centred on
    the cell), canonical source windows (the nominal one shifted inside the frame) and their size."""
    starts = np.arange(count) * cell - cell // 2
    size = min(2 * cell, n)
    canonical = np.clip(starts, 0, n - size)
    return starts, canonical, np.full(count, size)


def _known_fraction(mask: np.ndarray, canon_y: np.ndarray, canon_x: np.ndarray, size_y: int, size_x: int
                    ) -> np.ndarray:
    """Fraction of known pixels in every canonical source window, from an integral image."""
    ii = cv2.integral(mask.view(np.uint8))  # [H+1, W+1] counts of hole pixels
    y0, x0 = canon_y[:, None], canon_x[None, :]
    holes = ii[y0 + size_y, x0 + size_x] - ii[y0, x0 + size_x] - ii[y0 + size_y, x0] + ii[y0, x0]
    return 1.0 - holes / float(size_y * size_x)


def _cell_features(low: np.ndarray, full: tuple[int, int], cell: int, ny: int, nx: int, samples: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``([ny * nx, samples * samples * 3], [ny * nx])``: descriptors of each cell's 2-cell
    neighbourhood sampled on a ``samples`` grid of the low-resolution completed image, centred on
    the image's mean colour and L2-normalised (so a dot product is the cosine similarity: colour and
    structure both count), and the neighbourhood's low-resolution contrast (RMS about its own mean
    colour, grey levels), which the normalisation hides."""
    h, w = low.shape[:2]
    H, W = full

    def coords(n_cells: int, n: int, scale: float) -> np.ndarray:
        centres = (np.arange(n_cells) * cell + np.minimum(np.arange(1, n_cells + 1) * cell, n)) / 2
        offsets = (np.arange(samples) + 0.5) * (2 * cell / samples) - cell
        native = centres[:, None] + offsets[None, :]
        return ((native * scale) - 0.5).astype(np.float32)  # native edge coordinate -> low pixel centre

    ys = coords(ny, H, h / H).reshape(-1)
    xs = coords(nx, W, w / W).reshape(-1)
    map_x = np.broadcast_to(xs[None, :], (ys.size, xs.size)).copy()
    map_y = np.broadcast_to(ys[:, None], (ys.size, xs.size)).copy()
    sampled = cv2.remap(low, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    cells = sampled.reshape(ny, samples, nx, samples, 3).transpose(0, 2, 1, 3, 4).reshape(ny * nx, -1, 3)
    contrast = np.sqrt(np.mean((cells - cells.mean(axis=1, keepdims=True)) ** 2, axis=(1, 2)))
    feats = (cells - low.reshape(-1, 3).mean(0)).reshape(ny * nx, -1)
    norm = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norm, 1e-6), contrast


def _window_rms(residual: np.ndarray, canon_y: np.ndarray, canon_x: np.ndarray, size_y: int, size_x: int
                ) -> np.ndarray:
    """``[ny, nx]`` RMS of ``residual`` (``[H, W, 3]``) over every canonical source window."""
    ii = cv2.integral(np.einsum("ijc,ijc->ij", residual, residual))
    y0, x0 = canon_y[:, None], canon_x[None, :]
    total = ii[y0 + size_y, x0 + size_x] - ii[y0, x0 + size_x] - ii[y0 + size_y, x0] + ii[y0, x0]
    return np.sqrt(np.maximum(total, 0.0) / (3.0 * size_y * size_x))


def _detail_for_contrast(contrast: np.ndarray, rms: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the photo's own relation ``residual RMS ~ a + b * contrast`` over its source
    cells (least squares; ``b >= 0``, ``a > 0``): how much fine detail comes with how much
    low-resolution structure. Where the sources' contrasts barely differ there is nothing to fit
    and ``b = 0`` (every source keeps its amplitude)."""
    if contrast.size < 2 or float(np.std(contrast)) < _MIN_CONTRAST_SPREAD:
        return max(float(np.mean(rms)), 1e-3), 0.0
    design = np.stack([np.ones_like(contrast), contrast], axis=1).astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(design, rms.astype(np.float64), rcond=None)
    b = max(float(b), 0.0)
    a = float(np.mean(rms) - b * np.mean(contrast)) if b == 0.0 else float(a)
    return max(a, 1e-3), b


def _known_means(image: np.ndarray, mask: np.ndarray, low_shape: tuple[int, int]) -> np.ndarray:
    """float32 ``[h', w', 4]``: area means of ``image * known`` (channels 0-2) and of ``known``
    (channel 3) on a grid of up to :data:`_MID_FACTOR` x the low resolution (the native one if
    smaller). The hole's pixels count for nothing, so its content is never read."""
    H, W = image.shape[:2]
    weighted = np.empty((H, W, 4), np.float32)
    weighted[..., 3] = ~mask
    weighted[..., :3] = image
    weighted[..., :3] *= weighted[..., 3:]
    mid = (min(H, _MID_FACTOR * low_shape[0]), min(W, _MID_FACTOR * low_shape[1]))
    return weighted if mid == (H, W) else cv2.resize(weighted, (mid[1], mid[0]), interpolation=cv2.INTER_AREA)


def _normalised_blur(values: np.ndarray, weights: np.ndarray, sigma: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(G * values / G * weights, G * weights)`` for ``values`` already multiplied by
    ``weights`` (a Gaussian of ``sigma`` (y, x) px, reflected at the frame); 0 where no weight is
    in reach. Divided at this resolution, where the blurred weights are positive wherever a known
    pixel is near (upsampling them first would let the cubic kernel's undershoot reach 0)."""
    stack = cv2.GaussianBlur(np.dstack([values, weights]), (0, 0), sigmaX=sigma[1], sigmaY=sigma[0],
                             borderType=cv2.BORDER_REFLECT)
    den = stack[..., -1:]
    mean = np.where(den > _MIN_KNOWN_WEIGHT, stack[..., :-1] / np.maximum(den, _MIN_KNOWN_WEIGHT), 0.0)
    return np.ascontiguousarray(mean, dtype=np.float32), np.ascontiguousarray(den[..., 0], dtype=np.float32)


def _native_residual(image: np.ndarray, mask: np.ndarray, means: np.ndarray, low_shape: tuple[int, int]
                     ) -> np.ndarray:
    """float32 ``[H, W, 3]`` high-pass residual of the photo's KNOWN pixels; 0 in the hole.
    ``means``: :func:`_known_means`.

    The low-pass is a normalised convolution over the known pixels alone,
    ``G * (image * known) / G * known``: next to the hole it is the mean of the known
    neighbours. Blurring the photo completed with the fill instead puts the fill's level
    difference to the photo into the known pixels' residual as a halo (the step's own high
    pass), which the border continuation and the sources near the hole then carry into the hole
    as a rim of the opposite tone: a lighter frame around a darker fill, a darker one around a
    lighter fill. Neither the hole's content nor the fill is read."""
    H, W = image.shape[:2]
    # Low-pass on a shift-invariant Gaussian, not down-then-up to the low grid: down/up residuals
    # carry a pattern locked to the low pixel grid (period H / h), which shows as a mesh once a
    # residual is moved to a window at another phase. Blurring at up to 4x the low resolution keeps
    # it cheap on large frames; the remaining grid there is 4x finer and already blurred away.
    mid = means.shape[:2]
    sigma = (_LOWPASS_SIGMA * mid[0] / low_shape[0], _LOWPASS_SIGMA * mid[1] / low_shape[1])
    lowpass, _ = _normalised_blur(means[..., :3], means[..., 3], sigma)
    residual = image.astype(np.float32)
    if mid == (H, W):
        residual -= lowpass
    else:
        up = _Upsampler(lowpass, (H, W))
        for r in range(0, H, _STRIP_ROWS):
            r1 = min(r + _STRIP_ROWS, H)
            residual[r:r1] -= up.region((r, r1), (0, W))
    residual[mask] = 0.0
    return residual


def _border_level(means: np.ndarray, low: np.ndarray) -> np.ndarray:
    """float32 ``[h', w', 3]`` on the grid of ``means`` (:func:`_known_means`): what to add to the
    upsampled fill so that it meets the photo's level at the hole's border, fading out 0.5 to 2
    low pixels into the hole.

    Every low pixel the native hole touches is a hole for the inpainter, so the low hole is up to
    a low pixel wider than the native one: along the native border the fill is the inpainter's
    guess where the photo's own pixels stay. Whatever it guessed there (and whatever the cubic
    kernel carries across) shows as a tonal step all along the border. The mismatch
    ``image - up(low)`` is measured on the mostly known cells next to the hole (their known
    pixels' mean, smoothed along the border), continued into the hole by a membrane (harmonic:
    smooth, equal to it at the border, never beyond its range) and faded out by the distance from
    the border (:data:`_LEVEL_FADE`), so the fill's interior keeps the inpainter's tones."""
    mid = means.shape[:2]
    fill = _Upsampler(low, mid).region((0, mid[0]), (0, mid[1]))
    known = means[..., 3]
    unknown = known < 0.5
    if unknown.all():
        return np.zeros((*mid, 3), np.float32)
    # Measured on the mostly known cells at or next to hole pixels only: further out the photo and
    # the fill agree, and averaging those in would pull the border's value towards 0.
    near = cv2.dilate((known < 1 - _MIN_KNOWN_WEIGHT).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    weight = np.where(near & ~unknown, known, 0.0).astype(np.float32)
    mismatch = (means[..., :3] - known[..., None] * fill) * (weight / np.maximum(known, _MIN_KNOWN_WEIGHT))[..., None]
    cells_per_low = math.sqrt(mid[0] * mid[1] / (low.shape[0] * low.shape[1]))
    smooth = _LEVEL_SMOOTH * cells_per_low
    level, _ = _normalised_blur(mismatch, weight, (smooth, smooth))
    if not unknown.any():
        return level  # a thin hole: every cell is mostly known
    ys, xs = np.nonzero(unknown)
    index = np.full(mid, -1, np.int64)
    index[ys, xs] = np.arange(ys.size)
    n = ys.size
    diagonal = np.full(n, 1e-6)  # a trace of screening keeps the system regular
    rows, cols, rhs = [], [], np.zeros((n, 3))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < mid[0]) & (qx >= 0) & (qx < mid[1])  # the frame's edge: no flux
        p, qy, qx = np.nonzero(inside)[0], qy[inside], qx[inside]
        diagonal[p] += 1
        q = index[qy, qx]
        free = q >= 0
        rows.append(p[free])
        cols.append(q[free])
        rhs[p[~free]] += level[qy[~free], qx[~free]]  # Dirichlet: the mismatch on the known cells
    matrix = sparse.csc_matrix((np.concatenate([diagonal, -np.ones(sum(r.size for r in rows))]),
                                (np.concatenate([np.arange(n), *rows]), np.concatenate([np.arange(n), *cols]))),
                               shape=(n, n))
    # Distance into the hole in low pixels (a first unknown cell's centre lies half a cell in).
    depth = (cv2.distanceTransform(unknown.astype(np.uint8), cv2.DIST_L2, 5)[ys, xs] - 0.5) / cells_per_low
    start, stop = _LEVEL_FADE
    t = np.clip((depth - start) / (stop - start), 0.0, 1.0)
    level[ys, xs] = sparse_linalg.splu(matrix).solve(rhs) * (1 - t * t * (3 - 2 * t))[:, None]
    return level


# -- the public functions -------------------------------------------------------------------------------
def upscale_fill(image: np.ndarray, mask: np.ndarray, low_fill: np.ndarray, *, patch_grid: int = 32,
                 top_k: int = 4, temperature: float = 0.02, min_known: float = 0.95, samples: int = 6,
                 max_gain: float = 2.0, border_sigma: float = 1.5,
                 distance_weight: float = 0.25) -> np.ndarray:
    """Render a low-resolution fill at the photo's resolution with the photo's own fine detail.

    ``image``: uint8 ``[H, W, 3]`` RGB at native resolution; what lies under the hole is never read.
    ``mask``: bool ``[H, W]``, **True = hole** (0/1 integers are accepted).
    ``low_fill``: ``[h, w, 3]`` RGB, uint8 or float on the uint8 scale 0..255: the completed image
    of the same frame at low resolution (``h <= H``, ``w <= W``, same aspect ratio), e.g. an
    inpainter's output on the image downsampled so that every low pixel touching the hole is a hole.

    Returns uint8 ``[H, W, 3]``: ``image`` bit-identical outside ``mask``; inside it, the bicubic
    upsampling of ``low_fill`` (brought to the photo's level along the hole's border, fading out
    within 2 low pixels) plus high-frequency residual aggregated from the known regions.
    An empty mask returns a copy of ``image``; a frame without known cells to borrow detail from
    (e.g. a mask over everything) gets the upsampled fill alone.

    ``patch_grid``: cells along the longer side (the attention matrix is at most ``patch_grid**2``
    squared). ``top_k`` sources per hole cell, weighted by ``softmax(cosine / temperature)``.
    ``min_known``: the known fraction a cell's 2-cell window needs to serve as a source.
    ``samples``: descriptor samples per axis of a cell's window in the low fill. ``max_gain``: cap
    of the energy correction applied when several sources are averaged (1 disables it).
    ``distance_weight``: similarity subtracted per frame side of distance between a hole cell and
    a source (0: position does not matter).
    ``border_sigma`` (native px, 0 disables): right at the hole's border the known pixels' own
    residual, spread inward by a normalised Gaussian, takes over from the borrowed one, so lines and
    texture crossing the border continue (most of a thin stroke's pixels are such border pixels).
    """
    hole, low = _check_inputs(image, mask, low_fill)
    out = image.copy()
    if not hole.any():
        return out
    H, W = image.shape[:2]
    ys, xs = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]

    cell = max(1, math.ceil(max(H, W) / patch_grid))
    ny, nx = math.ceil(H / cell), math.ceil(W / cell)
    start_y, canon_y, size_y = _cell_layout(H, cell, ny)
    start_x, canon_x, size_x = _cell_layout(W, cell, nx)

    # Target cells: every cell with a hole pixel, dilated by one so that each hole pixel is covered
    # by all the windows that overlap it (otherwise the blend would fade the residual near cell edges).
    hole_cells = _cells_touching(hole, cell, ny, nx)
    targets = cv2.dilate(hole_cells.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ty, tx = np.nonzero(targets)

    # Accumulate into the base fill over the targets' windows (which cover the hole).
    by0, by1 = int(max(0, start_y[ty].min())), int(min(H, start_y[ty].max() + 2 * cell))
    bx0, bx1 = int(max(0, start_x[tx].min())), int(min(W, start_x[tx].max() + 2 * cell))
    by0, by1 = min(by0, int(ys[0])), max(by1, int(ys[-1]) + 1)
    bx0, bx1 = min(bx0, int(xs[0])), max(bx1, int(xs[-1]) + 1)
    if hole.all():  # nothing known: the upsampled fill alone
        up = _FillBase(low, (H, W))
    else:
        means = _known_means(image, hole, low.shape[:2])
        up = _FillBase(low, (H, W), _border_level(means, low))
    acc = up.region((by0, by1), (bx0, bx1))

    known = _known_fraction(hole, canon_y, canon_x, int(size_y[0]), int(size_x[0]))
    source_ids = np.flatnonzero(known.reshape(-1) >= min_known)
    if source_ids.size:
        residual = _native_residual(image, hole, means, low.shape[:2])
        feats, contrast = _cell_features(low, (H, W), cell, ny, nx, samples)
        # Cosine similarity ignores magnitude: a faintly structured fill matches the eyelashes, a
        # lip crease or the jaw's outline as well as it matches skin, and their detail copied at
        # full strength shows as a repeated, text-like pattern. A source's residual is scaled to
        # the detail this photo carries at the target's low-resolution contrast (never up).
        a, b = _detail_for_contrast(contrast[source_ids], _window_rms(residual, canon_y, canon_x, int(size_y[0]),
                                                                      int(size_x[0])).reshape(-1)[source_ids])
        # A fill smoother than the photo's typical cell (a biharmonic fill, a blurry network) is not
        # evidence of less detail, so targets are credited at least the median source's contrast.
        expected = a + b * np.maximum(contrast, np.median(contrast[source_ids]))
        expected[source_ids] = a + b * contrast[source_ids]
        target_ids = ty * nx + tx
        sims = feats[target_ids] @ feats[source_ids].T  # [targets, sources] cosine similarities
        if distance_weight > 0:
            # Prefer nearby sources: texture varies over a face, and neighbouring hole cells then
            # borrow from different places instead of tiling one source over and over.
            dy = (ty[:, None] - source_ids[None, :] // nx) / max(ny, nx)
            dx = (tx[:, None] - source_ids[None, :] % nx) / max(ny, nx)
            sims = sims - distance_weight * np.sqrt(dy**2 + dx**2)
        sims[target_ids[:, None] == source_ids[None, :]] = -np.inf  # a cell never copies itself
        k = min(top_k, source_ids.size)
        kernel_y, kernel_x = _window_kernel(cell), _window_kernel(cell)
        # (source, window offset and shape) -> (window-weighted mean, energy about it).
        stats_cache: dict[tuple[int, int, int, int, int], tuple[np.ndarray, float]] = {}
        for t, (cy, cx) in enumerate(zip(ty, tx)):
            row = sims[t]
            if not np.isfinite(row).any():
                continue
            top = np.argpartition(-row, k - 1)[:k] if k < row.size else np.arange(row.size)
            top = top[np.isfinite(row[top])]
            logits = row[top] / temperature
            weights = np.exp(logits - logits.max())
            weights /= weights.sum()
            # The target window, clipped to the frame.
            ay, ax = int(start_y[cy]), int(start_x[cx])
            ly, hy = max(ay, 0), min(ay + 2 * cell, H)
            lx, hx = max(ax, 0), min(ax + 2 * cell, W)
            win = kernel_y[ly - ay:hy - ay, None] * kernel_x[None, lx - ax:hx - ax]
            agg = np.zeros((hy - ly, hx - lx, 3), np.float32)
            level = np.zeros(3)
            energy = 0.0
            for s, wgt in zip(source_ids[top], weights):
                sy, sx = divmod(int(s), nx)
                patch = _source_patch(residual, (int(start_y[sy]), int(start_x[sx])),
                                      (int(canon_y[sy]), int(canon_x[sx])), (int(size_y[0]), int(size_x[0])),
                                      (ly - ay, lx - ax), (hy - ly, hx - lx))
                key = (int(s), ly - ay, lx - ax, hy - ly, hx - lx)
                if key not in stats_cache:
                    # A residual window is zero-mean only on average (a window beside an edge
                    # keeps part of the edge's step); its level would add to the fill's tones, by
                    # up to twice over where the windows overlap: cell-sized blotches. Removed
                    # under the blending window, so what is added has no level of its own.
                    mean = np.tensordot(win, patch, axes=([0, 1], [0, 1])) / float(win.sum())
                    square = np.einsum("ijc,ijc->c", patch, patch, dtype=np.float64) / (patch.size // 3)
                    plain = patch.mean(axis=(0, 1), dtype=np.float64)
                    stats_cache[key] = mean, float(np.mean(square - 2 * mean * plain + mean * mean))
                mean, patch_energy = stats_cache[key]
                amp = min(1.0, float(expected[cy * nx + cx] / expected[s]))
                agg += (wgt * amp) * patch
                level += (wgt * amp) * mean
                energy += wgt * amp * amp * patch_energy
            agg -= level.astype(np.float32)
            # Averaging unrelated residuals cancels them; give back the sources' energy (capped,
            # since coherent sources do not cancel and must not be amplified).
            actual = float(np.mean(agg.astype(np.float64) ** 2))
            gain = min(max_gain, math.sqrt(energy / actual)) if actual > 1e-12 else 1.0
            gain = max(gain, 1.0)
            acc[ly - by0:hy - by0, lx - bx0:hx - bx0] += (gain * win)[..., None] * agg
        if border_sigma > 0:
            _continue_border_residual(acc, residual, hole, up, (by0, by1, bx0, bx1), border_sigma)
        del residual
    region = out[by0:by1, bx0:bx1]
    inside = hole[by0:by1, bx0:bx1]
    region[inside] = np.clip(np.rint(acc[inside]), 0, 255).astype(np.uint8)
    return out


def _continue_border_residual(acc: np.ndarray, residual: np.ndarray, hole: np.ndarray, up: _FillBase,
                              bbox: tuple[int, int, int, int], sigma: float) -> None:
    """In place on ``acc`` (base + aggregated residual over ``bbox``): near the hole's border, blend
    the aggregated residual towards the known residual next to it (normalised convolution).

    Weight ``rho = min(1, 2 * local known density)``: about 0.6 one pixel into the hole, 0 a few
    sigmas in. Row strips with a margin keep the temporaries small on large frames."""
    H, W = hole.shape
    y0, y1, x0, x1 = bbox
    margin = int(math.ceil(4 * sigma)) + 1
    for r0 in range(y0, y1, _STRIP_ROWS):
        r1 = min(r0 + _STRIP_ROWS, y1)
        e0, e1 = max(0, r0 - margin), min(H, r1 + margin)
        c0, c1 = max(0, x0 - margin), min(W, x1 + margin)
        known = (~hole[e0:e1, c0:c1]).astype(np.float32)
        den = cv2.GaussianBlur(known, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        num = cv2.GaussianBlur(residual[e0:e1, c0:c1] * known[..., None], (0, 0), sigma,
                               borderType=cv2.BORDER_REPLICATE)
        sl = (slice(r0 - e0, r1 - e0), slice(x0 - c0, x1 - c0))
        den, num = den[sl], num[sl]
        inside = hole[r0:r1, x0:x1] & (den > 1e-4)
        if not inside.any():
            continue
        rho = np.minimum(1.0, 2.0 * den[inside])[:, None]
        continued = num[inside] / den[inside][:, None]
        strip = acc[r0 - y0:r1 - y0]
        base = up.region((r0, r1), (x0, x1))[inside]
        strip[inside] = base + rho * continued + (1 - rho) * (strip[inside] - base)


def _cells_touching(hole: np.ndarray, cell: int, ny: int, nx: int) -> np.ndarray:
    """bool ``[ny, nx]``: cells that hold at least one hole pixel (exact, via an integral image)."""
    H, W = hole.shape
    ii = cv2.integral(hole.view(np.uint8))
    y = np.minimum(np.arange(ny + 1) * cell, H)
    x = np.minimum(np.arange(nx + 1) * cell, W)
    counts = ii[y[1:, None], x[None, 1:]] - ii[y[:-1, None], x[None, 1:]] - ii[y[1:, None], x[None, :-1]] \
        + ii[y[:-1, None], x[None, :-1]]
    return counts > 0


def _source_patch(residual: np.ndarray, nominal: tuple[int, int], canonical: tuple[int, int],
                  size: tuple[int, int], offset: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The part of a source's residual window that lines up with a (possibly clipped) target
    window: ``offset`` into the nominal window, shifted to stay inside the canonical one."""
    out = []
    for nom, can, sz, off, n in zip(nominal, canonical, size, offset, shape):
        start = min(max(nom + off, can), can + sz - n)
        out.append(slice(start, start + n))
    return residual[out[0], out[1]]


def low_size_for(shape: tuple[int, int], low_size: int) -> tuple[int, int]:
    """``(h, w)`` of the low-resolution frame: the longer side ``low_size``, the aspect kept."""
    H, W = shape
    s = min(1.0, low_size / max(H, W))
    return max(1, round(H * s)), max(1, round(W * s))


def downsample_with_mask(image: np.ndarray, mask: np.ndarray, low_shape: tuple[int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsample ``image`` (uint8 ``[H, W, 3]``) and ``mask`` (bool, True = hole) to
    ``low_shape`` ``(h, w)``: every low pixel whose footprint touches the hole is a hole, so the
    inpainter never sees the native hole's content."""
    h, w = low_shape
    low = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    low_mask = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 1e-6
    return low, low_mask


def inpaint_native(image: np.ndarray, mask: np.ndarray, inpainter: LowInpainter, *, low_size: int = 64,
                   **kwargs) -> np.ndarray:
    """Inpaint a native-resolution ``image`` (uint8 ``[H, W, 3]``) where ``mask`` (bool ``[H, W]``,
    True = hole) with an inpainter that runs at low resolution.

    The frame is area-downsampled so its longer side is ``low_size`` (every low pixel touching the
    hole becomes a hole), ``inpainter(low_image, low_mask)`` completes it (uint8 ``[h, w, 3]`` in,
    uint8 or 0..255 float ``[h, w, 3]`` out; see :func:`method_inpainter`), and
    :func:`upscale_fill` (``kwargs``) renders the fill at native resolution. Outside ``mask`` the
    result is ``image`` bit for bit. A frame no larger than ``low_size`` is inpainted directly.
    """
    hole = _check_image_mask(image, mask)
    if not hole.any():
        return image.copy()
    low_shape = low_size_for(image.shape[:2], low_size)
    low_image, low_mask = downsample_with_mask(image, hole, low_shape)
    low_fill = np.asarray(inpainter(low_image, low_mask))
    if low_fill.shape != low_image.shape:
        raise ValueError(f"the inpainter returned {list(low_fill.shape)}, expected {list(low_image.shape)}")
    if low_shape == image.shape[:2]:
        out = image.copy()
        out[hole] = np.clip(np.rint(low_fill[hole].astype(np.float32)), 0, 255).astype(np.uint8)
        return out
    return upscale_fill(image, hole, low_fill, **kwargs)


def method_inpainter(method: str = "edgeconnect", **kwargs) -> LowInpainter:
    """A :data:`LowInpainter` over :func:`inpainting.inpaint` (``method`` and ``kwargs``, e.g.
    ``model=`` or ``edges=`` at the low resolution, are passed on). Converts uint8 HWC to the API's
    float NCHW in [-1, 1] and back (float 0..255, not rounded, so the upsampling sees no banding)."""
    from inpainting.inpaint import inpaint

    def run(low_image: np.ndarray, low_mask: np.ndarray) -> np.ndarray:
        x = uint8_to_float(low_image)
        m = torch.from_numpy(low_mask.astype(np.float32))[None, None]
        with torch.no_grad():
            y = inpaint(x, m, method=method, **kwargs).image
        return ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()

    return run
