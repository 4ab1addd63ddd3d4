"""Native-resolution edit transfer: the generator proposes the change, the photo keeps its pixels.

The generator renders the face at its own resolution ``r`` (64 px by default), far below a
photo's. Pasting its render back replaces the face with a blurred copy, so instead only the
*difference* between the reconstruction ``R = G(w)`` and the edit ``E = G(w')`` is carried over
to the photo:

1. a dense displacement field from ``R`` to ``E`` (optical flow on the two renders; a smile
   moves the mouth corners, an age edit the jaw line), applied to the photo's own pixels;
2. a low-frequency residual: what the flow cannot explain (``E`` minus ``R`` warped by the flow,
   e.g. glasses appearing, hair colour), band-limited to the frequencies the generator
   resolves, and added to the warped photo;
3. a change mask (where the flow or the residual is significant, dilated and feathered): every
   photo pixel outside it is copied bit for bit; a zero edit returns the photo unchanged.

Everything is computed at ``r`` in the aligned frame (:class:`EditTransfer`) and applied in the
photo's own pixel grid by :func:`apply_transfer`, through the aligned face's transform: each
photo pixel is resampled at most once (by the warp), in row strips, so any photo size works in
bounded memory.

Conventions: renders are float ``[1, 3, r, r]`` (or ``[3, r, r]``) RGB in [-1, 1]; photos are
uint8 ``[H, W, 3]`` RGB; flow is float32 ``[r, r, 2]`` in aligned px (x, y) with
``E(p) ~ R(p + flow(p))`` (backward flow); residuals are float32 ``[r, r, 3]`` in uint8 units
(0..255 scale); masks are float32 ``[r, r]`` in [0, 1], **1 = changed**.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from inversion.align import AlignedFace, paste_region, region_weights


class Rendering(str, enum.Enum):
    """How an edited face reaches the photo.

    ``native``: flow + residual transfer onto the photo's own pixels (the default);
    ``residual``: the residual alone (no flow), for comparison; ``generator``: the generator's
    render scaled up and pasted (the behaviour before native rendering, kept for comparison).
    """

    NATIVE = "native"
    RESIDUAL = "residual"
    GENERATOR = "generator"


@dataclass(frozen=True)
class TransferOptions:
    """Knobs of :func:`compute_transfer`. The defaults were chosen with ``benchmarks/fidelity.py``
    on the portraits and held-out UTKFace faces (edit kept vs sharpness; see the README).

    ``use_flow``: estimate the displacement field (off = residual-only transfer).
    ``flow_upsample``: the renders are upsampled this many times before DIS optical flow (its
    smallest patch is 8 px, a mouth at 64 px a few px): 8 kept more of the edits than 4.
    ``flow_gate``: displacements below the first value (a fraction of the face side) are
    dropped, above the second kept whole, ramped between: an edit moves the generator's pixels a
    little everywhere, and warping the photo by that costs its finest detail (every warped pixel
    is interpolated) for no visible gain; the residual absorbs what is dropped.
    ``drop_bands``: finest Laplacian-pyramid bands of the residual left out. 0: at the photo's
    scale even the generator's finest octave is coarse, and the noise texture it carries cancels
    between ``E`` and ``R``; dropping one octave lost a third of the age edit.
    ``residual_threshold``: residual (uint8 units, max over channels) from which a pixel counts as
    changed (as does any pixel the gated flow moves). ``dilate`` / ``feather``: the change mask
    is grown by ``dilate`` and softened over ``feather`` (both as fractions of the face side).
    """

    use_flow: bool = True
    flow_upsample: int = 8
    flow_gate: tuple[float, float] = (0.003, 0.008)
    drop_bands: int = 0
    residual_threshold: float = 3.0
    dilate: float = 0.03
    feather: float = 0.05


@dataclass(frozen=True)
class EditTransfer:
    """What an edit changes, in the aligned frame at the generator's resolution ``r``.

    ``flow``: float32 ``[r, r, 2]`` (x, y) backward displacement in aligned px; ``residual``:
    float32 ``[r, r, 3]`` in uint8 units; ``mask``: float32 ``[r, r]`` in [0, 1], 1 = changed.
    ``identity`` is True when the edit changes nothing (then the photo is returned as is).
    """

    flow: np.ndarray
    residual: np.ndarray
    mask: np.ndarray

    @property
    def res(self) -> int:
        return self.mask.shape[0]

    @property
    def identity(self) -> bool:
        return not bool(self.mask.any())


def _as_hwc255(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] ``[1, 3, r, r]`` / ``[3, r, r]`` tensor, or uint8 ``[r, r, 3]`` -> float32 ``[r, r, 3]`` 0..255."""
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"one render at a time, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"renders must be [1, 3, r, r] or [3, r, r] RGB, got {tuple(image.shape)}")
        return ((t.permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.float32)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"images must be uint8 [r, r, 3] RGB, got {a.dtype} {a.shape}")
    return a.astype(np.float32)


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32)), 0, 255).astype(np.uint8)


#: Largest side the flow is estimated at (a 1024 px generator's renders are used as they are).
FLOW_SIDE = 512


def estimate_flow(reconstruction: np.ndarray, edited: np.ndarray, upsample: int = 8) -> np.ndarray:
    """Backward flow from the reconstruction to the edit: float32 ``[r, r, 2]`` aligned px with
    ``edited(p) ~ reconstruction(p + flow(p))``. Inputs: float32 ``[r, r, 3]`` 0..255.

    DIS optical flow (OpenCV) on the renders upsampled ``upsample`` times (to at most
    :data:`FLOW_SIDE` px, or ``r``): at 64 px a mouth is a few pixels wide, below DIS's 8 px patches.
    """
    r = reconstruction.shape[0]
    upsample = max(1, min(upsample, FLOW_SIDE // r))
    size = (r * upsample, r * upsample)
    a = cv2.resize(_grey_u8(edited), size, interpolation=cv2.INTER_CUBIC)
    b = cv2.resize(_grey_u8(reconstruction), size, interpolation=cv2.INTER_CUBIC)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None)  # a(p) ~ b(p + flow(p)), in upsampled px
    # Back to r px: area-average, and the displacement shrinks with the grid.
    return (cv2.resize(flow, (r, r), interpolation=cv2.INTER_AREA) / upsample).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (float32 ``[r, r, C]``) sampled at ``p + flow(p)`` (bicubic, border replicated)."""
    r = flow.shape[0]
    grid = np.mgrid[0:r, 0:r].astype(np.float32)
    map_x = grid[1] + flow[..., 0]
    map_y = grid[0] + flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def band_limit(image: np.ndarray, drop_bands: int) -> np.ndarray:
    """``image`` without its ``drop_bands`` finest Laplacian-pyramid bands (each an octave).

    The pyramid's coarse part is the image blurred and subsampled ``drop_bands`` times and brought
    back up: the sum of the kept bands.
    """
    out = image
    sizes = []
    for _ in range(drop_bands):
        sizes.append(out.shape[1::-1])
        out = cv2.pyrDown(out, borderType=cv2.BORDER_REFLECT_101)
    for size in reversed(sizes):
        out = cv2.pyrUp(out, dstsize=size, borderType=cv2.BORDER_REFLECT_101)
    return out.astype(np.float32, copy=False)


def gate_flow(flow: np.ndarray, low: float, high: float) -> np.ndarray:
    """``flow`` (``[r, r, 2]`` px) with displacements below ``low * r`` px set to 0, above
    ``high * r`` kept, ramped linearly between."""
    r = flow.shape[0]
    magnitude = np.linalg.norm(flow, axis=2, keepdims=True)
    return (flow * np.clip((magnitude - low * r) / max((high - low) * r, 1e-6), 0.0, 1.0)).astype(np.float32)


def change_mask(flow: np.ndarray, residual: np.ndarray, options: TransferOptions) -> np.ndarray:
    """float32 ``[r, r]`` in [0, 1]: 1 where the flow or the residual is significant, grown by
    ``options.dilate`` and feathered over ``options.feather`` (fractions of the side). Exactly 0
    far from any change, so those photo pixels stay bit-identical."""
    r = flow.shape[0]
    moved = np.linalg.norm(flow, axis=2) > 0
    tinted = np.abs(residual).max(axis=2) > options.residual_threshold
    hard = (moved | tinted).astype(np.uint8)
    if not hard.any():
        return np.zeros((r, r), np.float32)
    grow = max(1, round(options.dilate * r))
    hard = cv2.dilate(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    soft = max(1, round(options.feather * r))
    # A box filter twice ~ a smooth bump with compact support: values beyond it are exactly 0.
    m = hard.astype(np.float32)
    for _ in range(2):
        m = cv2.blur(m, (soft, soft), borderType=cv2.BORDER_REPLICATE)
    m[m < 1e-4] = 0.0
    return np.clip(m, 0.0, 1.0)


def compute_transfer(reconstruction: torch.Tensor | np.ndarray, edited: torch.Tensor | np.ndarray,
                     options: TransferOptions = TransferOptions()) -> EditTransfer:
    """What turns ``reconstruction`` into ``edited`` (both renders of one generator at ``r``):
    float ``[1, 3, r, r]`` in [-1, 1] or uint8 ``[r, r, 3]``. Identical renders give an identity
    transfer (empty mask)."""
    R, E = _as_hwc255(reconstruction), _as_hwc255(edited)
    if R.shape != E.shape or R.shape[0] != R.shape[1]:
        raise ValueError(f"reconstruction and edit must be square renders of one size, got {R.shape} and {E.shape}")
    r = R.shape[0]
    if np.array_equal(R, E):
        zeros = np.zeros((r, r), np.float32)
        return EditTransfer(np.zeros((r, r, 2), np.float32), np.zeros((r, r, 3), np.float32), zeros)
    if options.use_flow:
        flow = gate_flow(estimate_flow(R, E, options.flow_upsample), *options.flow_gate)
    else:
        flow = np.zeros((r, r, 2), np.float32)
    residual = band_limit(E - (warp(R, flow) if options.use_flow else R), options.drop_bands)
    return EditTransfer(flow=flow, residual=residual, mask=change_mask(flow, residual, options))


# -- applying a transfer to the photo -----------------------------------------------------------------
#: Rows of the photo processed at once: the per-strip maps cost ~40 bytes per pixel.
STRIP_ROWS = 256
#: The photo is resampled with Lanczos (8x8 taps): at the fractional positions a flow asks for, a
#: bicubic kernel already damps the finest detail (pores, hair) visibly.
PHOTO_INTERPOLATION = cv2.INTER_LANCZOS4


def _sample_field(field: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bicubic samples of an aligned-frame field at aligned coordinates (border replicated)."""
    return cv2.remap(field, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def apply_transfer(photo: np.ndarray, aligned: AlignedFace, transfer: EditTransfer, feather: float = 0.1
                   ) -> np.ndarray:
    """The photo with the edit of ``transfer`` applied at its own resolution.

    ``photo``: uint8 ``[H, W, 3]`` RGB, the one ``aligned`` was cut from (``aligned.res`` may
    differ from ``transfer.res``: only its quad is used). For each photo pixel ``p`` in the
    aligned square, with ``u`` its aligned position and ``A`` the aligned->photo linear map:
    ``out(p) = photo(p + A flow(u)) + residual(u)``, blended with the photo by the change mask
    (times the square's own feathered edge, ``feather`` as in :func:`inversion.paste_back`).
    Returns a new photo; pixels where that weight is 0 are bit-identical to ``photo``.
    """
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3] RGB, got {photo.dtype} {photo.shape}")
    out = photo.copy()
    region = paste_region(photo.shape, aligned)
    if transfer.identity or region is None:
        return out
    x0, y0, x1, y1 = region
    r = transfer.res
    # photo px -> transfer px (pixel centres: aligned px scaled by r / aligned.res).
    k = r / aligned.res
    to_t = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5], [0, 0, 1]]) @ aligned.from_photo
    # transfer px displacement -> photo px displacement (rotation and scale only).
    lin = (aligned.to_photo @ np.diag([1 / k, 1 / k, 1]))[:2, :2].astype(np.float32)
    # cv2.remap samples at most 4 channels at once: flow + mask, then the residual.
    motion = np.dstack([transfer.flow, transfer.mask]).astype(np.float32)
    residual = np.ascontiguousarray(transfer.residual, dtype=np.float32)
    src = np.ascontiguousarray(photo)
    xs = np.arange(x0, x1, dtype=np.float64)
    for top in range(y0, y1, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, y1)
        ys = np.arange(top, bottom, dtype=np.float64)[:, None]
        u = (to_t[0, 0] * xs[None, :] + to_t[0, 1] * ys + to_t[0, 2]).astype(np.float32)
        v = (to_t[1, 0] * xs[None, :] + to_t[1, 1] * ys + to_t[1, 2]).astype(np.float32)
        f = _sample_field(motion, u, v)
        weight = np.clip(f[..., 2], 0.0, 1.0) * region_weights((x0, top, x1, bottom), aligned, feather)
        if not weight.any():
            continue
        dx = lin[0, 0] * f[..., 0] + lin[0, 1] * f[..., 1]
        dy = lin[1, 0] * f[..., 0] + lin[1, 1] * f[..., 1]
        grid_x = np.broadcast_to(xs[None, :].astype(np.float32), dx.shape)
        grid_y = np.broadcast_to(ys.astype(np.float32), dx.shape)
        warped = cv2.remap(src, grid_x + dx, grid_y + dy, PHOTO_INTERPOLATION, borderMode=cv2.BORDER_REFLECT_101)
        base = photo[top:bottom, x0:x1].astype(np.float32)
        candidate = warped.astype(np.float32) + _sample_field(residual, u, v)
        blend = np.clip(np.round(base + (candidate - base) * weight[..., None]), 0, 255).astype(np.uint8)
        out[top:bottom, x0:x1] = np.where(weight[..., None] > 0, blend, photo[top:bottom, x0:x1])
    return out


def transfer_edit(photo: np.ndarray, aligned: AlignedFace, reconstruction: torch.Tensor | np.ndarray,
                  edited: torch.Tensor | np.ndarray, rendering: Rendering | str = Rendering.NATIVE,
                  options: TransferOptions = TransferOptions(), feather: float = 0.1) -> np.ndarray:
    """The photo with the change from ``reconstruction`` to ``edited`` (renders of the aligned
    face, see :func:`compute_transfer`) applied as ``rendering`` says. ``generator`` pastes the
    edited render itself (scaled up), for comparison."""
    from inversion.align import paste_back

    rendering = Rendering(rendering)
    if rendering is Rendering.GENERATOR:
        face = np.clip(np.round(_as_hwc255(edited)), 0, 255).astype(np.uint8)
        return paste_back(photo, aligned, face, feather=feather)
    if rendering is Rendering.RESIDUAL:
        options = dataclasses.replace(options, use_flow=False)
    return apply_transfer(photo, aligned, compute_transfer(reconstruction, edited, options), feather)
