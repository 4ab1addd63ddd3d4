"""GLCIC inference in the package's API: images ``[N, 3, H, W]`` in [-1, 1], masks ``[N, 1, H, W]``
with 1 = hole; the result is composited (known pixels returned exactly), optionally after the
paper's post-processing, Poisson blending of the filled hole into its surroundings.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from ganbrush_core.devices import module_device, on_device, resolve_device
from ganbrush_core.masks import check_mask
from inpainting.glcic import DOWNSAMPLING, CompletionNetwork, completion_inputs
from inpainting.glcic_checkpoints import load_glcic
from inpainting.inpaint import _pad_to_multiple, check_image


@functools.lru_cache(maxsize=2)
def _default_model(device: torch.device) -> CompletionNetwork:
    return load_glcic(device=device)


def poisson_blend(filled_uint8: np.ndarray, original_uint8: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson-blend the hole of ``filled_uint8`` into ``original_uint8`` (both uint8 ``[H, W, 3]``
    RGB) with OpenCV's ``seamlessClone`` (NORMAL_CLONE): inside the hole (``mask`` ``[H, W]``,
    nonzero = hole) the result keeps the fill's gradients while meeting the known pixels at the
    hole's border; outside it is ``original_uint8`` exactly. A mask without a hole returns a copy."""
    if filled_uint8.shape != original_uint8.shape or filled_uint8.ndim != 3 or filled_uint8.shape[2] != 3:
        raise ValueError(f"poisson_blend takes two uint8 [H, W, 3] images of one size, got "
                         f"{filled_uint8.shape} and {original_uint8.shape}")
    if mask.shape != filled_uint8.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, the images {filled_uint8.shape[:2]}")
    hole = mask > 0
    if not hole.any():
        return original_uint8.copy()
    # One pixel of known border inside the cloned region gives the boundary condition; the image
    # is framed by a pixel so a hole touching the edge still has a border seamlessClone accepts.
    region = cv2.dilate(hole.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    pad = ((1, 1), (1, 1), (0, 0))
    src = np.pad(filled_uint8, pad, mode="edge")
    dst = np.pad(original_uint8, pad, mode="edge")
    region = np.pad(region, 1)
    x, y, w, h = cv2.boundingRect(region)
    blended = cv2.seamlessClone(src[..., ::-1].copy(), dst[..., ::-1].copy(), region, (x + w // 2, y + h // 2),
                                cv2.NORMAL_CLONE)[1:-1, 1:-1, ::-1]
    return np.where(hole[..., None], blended, original_uint8)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> uint8 ``[H, W, 3]``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def inpaint_glcic(image: torch.Tensor, mask: torch.Tensor, model: CompletionNetwork | None = None,
                  poisson: bool = True, device: str | torch.device | None = None) -> torch.Tensor:
    """Fill the holes of ``image`` ``[N, 3, H, W]`` in [-1, 1] where ``mask`` ``[N, 1, H, W]`` is
    1 with a GLCIC completion network (:func:`inpainting.load_glcic`; ``None``: the shipped
    default), then, with ``poisson``, Poisson-blend each hole into its border. Any size works
    (padded to a multiple of 4, cropped back). Pixels outside the hole are returned exactly;
    ``device``: where the network runs (``None``: where ``model`` is; the default model: the CPU)."""
    if model is None:
        model = _default_model(resolve_device("cpu" if device is None else device))
    check_image(image)
    check_mask(mask, tuple(image.shape[-2:]))
    if mask.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {mask.shape[0]} masks")
    h, w = image.shape[-2:]
    model = on_device(model, device).eval()
    dev = module_device(model)
    image01 = _pad_to_multiple((image.to(dev, torch.float32) + 1) / 2, DOWNSAMPLING)
    mask_p = _pad_to_multiple(mask.to(dev, torch.float32), DOWNSAMPLING, mode="constant")
    out01 = model(completion_inputs(image01, mask_p, model.mean_color))[..., :h, :w]
    out = (out01 * 2 - 1).to(image.device, image.dtype)
    filled = torch.where(mask > 0.5, out, image)
    if poisson:
        blended = [poisson_blend(_to_uint8(f), _to_uint8(o), m[0].cpu().numpy() > 0.5)
                   for f, o, m in zip(filled, image, mask)]
        out = torch.from_numpy(np.stack(blended)).permute(0, 3, 1, 2).to(image.device, image.dtype) / 127.5 - 1
        filled = torch.where(mask > 0.5, out, image)
    return filled
