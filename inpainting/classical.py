"""Classical inpainting baselines behind the API conventions: ``fn(image, mask) -> image`` with
float NCHW RGB in [-1, 1] and masks ``[N, 1, H, W]`` with 1 = hole. Outputs are composited:
pixels outside the hole are the input's, bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

# OpenCV's neighbourhood radius (pixels) considered around each filled pixel.
DEFAULT_RADIUS = 3
# pypatchmatch's patch radius: patches span (2 r + 1)^2 pixels; its examples use 3.
DEFAULT_PATCH_RADIUS = 3


def _per_image(image: torch.Tensor, mask: torch.Tensor, fill) -> torch.Tensor:
    """Run ``fill(rgb01 HxWx3 float64, hole HxW bool) -> HxWx3 in [0, 1]`` per image and composite."""
    rgb = ((image.detach().cpu().double() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    holes = mask.detach().cpu()[:, 0].numpy() > 0.5
    filled = np.stack([fill(np.ascontiguousarray(r), h) if h.any() else r for r, h in zip(rgb, holes)])
    out = torch.from_numpy(filled).permute(0, 3, 1, 2).to(image.dtype).to(image.device) * 2 - 1
    return torch.where(mask > 0.5, out, image)


def _opencv(rgb: np.ndarray, hole: np.ndarray, flag: int, radius: float) -> np.ndarray:
    # Channel by channel in float32: OpenCV takes 3-channel images only as uint8, which would
    # quantise the fill. Its float path still assumes the 0..255 scale (in 0..1 Telea diverges).
    m = hole.astype(np.uint8)
    channels = [cv2.inpaint((rgb[..., c] * 255).astype(np.float32), m, radius, flag) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.float64) / 255


def inpaint_telea(image: torch.Tensor, mask: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """OpenCV's fast marching method (Telea 2004)."""
    return _per_image(image, mask, lambda r, h: _opencv(r, h, cv2.INPAINT_TELEA, radius))


def inpaint_ns(image: torch.Tensor, mask: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """OpenCV's Navier-Stokes based method (Bertalmio et al. 2001)."""
    return _per_image(image, mask, lambda r, h: _opencv(r, h, cv2.INPAINT_NS, radius))


def inpaint_biharmonic(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic equation fill (smooth; slow for large holes on large images)."""
    from skimage.restoration import inpaint_biharmonic as biharmonic

    return _per_image(image, mask, lambda r, h: biharmonic(r, h, channel_axis=-1))


def inpaint_patchmatch(image: torch.Tensor, mask: torch.Tensor, patch_radius: int = DEFAULT_PATCH_RADIUS,
                       seed: int = 0) -> torch.Tensor:
    """PatchMatch (Barnes et al. 2009) from the ``pypatchmatch`` package (a prebuilt native library;
    works offline). Works on uint8 internally, so the fill is quantised to 1/255; ``seed`` makes the
    randomised search repeatable."""
    import patchmatch

    if not patchmatch.patchmatch_available:
        raise RuntimeError("the pypatchmatch native library failed to load; reinstall pypatchmatch")

    def fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        patchmatch.set_random_seed(seed)
        u8 = np.round(rgb * 255).astype(np.uint8)
        return patchmatch.inpaint(u8, hole.astype(np.uint8), patch_size=patch_radius).astype(np.float64) / 255

    return _per_image(image, mask, fill)
