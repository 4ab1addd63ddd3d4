"""GLCIC inference in the package's API: images ``[N, 3, H, W]`` in [-1, 1], masks ``[N, 1, H, W]``
with 1 = hole; the result is composited (known pixels returned exactly), optionally after the
paper's post-processing, Poisson blending of the filled hole into its surroundings.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from ganbrush_core.devices import module_device, on_device, resolve_device
from ganbrush_core.masks import check_mask
from inpainting.glcic import DOWNSAMPLING, CompletionNetwork, Prefill
from inpainting.glcic_checkpoints import load_glcic
from inpainting.inpaint import _pad_to_multiple, check_image


@functools.lru_cache(maxsize=4)
def _default_model(device: torch.device, prefill: Prefill = Prefill.MEAN) -> CompletionNetwork:
    return load_glcic(device=device, prefill=prefill)


def poisson_blend(fill: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson blending (Perez et al. 2003) of ``fill`` into the hole of ``image``: inside the hole
    (``mask`` ``[H, W]``, nonzero = hole) the result has the Laplacian of ``fill`` and meets
    ``image``'s known pixels at the hole's border; outside it is ``image`` exactly. ``fill`` and
    ``image`` are ``[H, W, C]`` of one size (float, or uint8: the result is then rounded). Only
    the known pixels of ``image`` are read, never what lies inside its hole, so the blend cannot
    copy back the content the hole removes. The image's border is a free (Neumann) boundary."""
    if fill.shape != image.shape or fill.ndim != 3:
        raise ValueError(f"poisson_blend takes two [H, W, C] images of one size, got {fill.shape} and {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, the images {image.shape[:2]}")
    hole = mask > 0
    if not hole.any() or hole.all():
        return (fill if hole.all() else image).copy()
    h, w = hole.shape
    f, known = fill.astype(np.float64), image.astype(np.float64)
    index = np.full((h, w), -1, np.int64)
    ys, xs = np.nonzero(hole)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [np.arange(len(ys))], [np.arange(len(ys))], []
    diagonal = np.zeros(len(ys))
    rhs = np.zeros((len(ys), f.shape[2]))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        p, qy, qx = np.nonzero(inside)[0], qy[inside], qx[inside]
        diagonal[p] += 1
        rhs[p] += f[ys[p], xs[p]] - f[qy, qx]  # the fill's gradient towards each neighbour
        q = index[qy, qx]
        unknown = q >= 0
        rows.append(p[unknown])
        cols.append(q[unknown])
        vals.append(-np.ones(int(unknown.sum())))
        rhs[p[~unknown]] += known[qy[~unknown], qx[~unknown]]  # Dirichlet: the known border
    A = scipy.sparse.csc_matrix((np.concatenate([diagonal, *vals]), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(len(ys), len(ys)))
    solution = scipy.sparse.linalg.splu(A).solve(rhs)
    out = known.copy()
    out[ys, xs] = solution
    if image.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().cpu().numpy()


@torch.no_grad()
def inpaint_glcic(image: torch.Tensor, mask: torch.Tensor, model: CompletionNetwork | None = None,
                  poisson: bool = True, device: str | torch.device | None = None,
                  prefill: Prefill | str = Prefill.MEAN) -> torch.Tensor:
    """Fill the holes of ``image`` ``[N, 3, H, W]`` in [-1, 1] where ``mask`` ``[N, 1, H, W]`` is
    1 with a GLCIC completion network (:func:`inpainting.load_glcic`; ``None``: the shipped one
    with ``prefill``), then, with ``poisson``, Poisson-blend each hole into its border. Any size
    works (padded to a multiple of 4, cropped back; a biharmonic prefill gets slow on large
    holes of large images). Pixels outside the hole are returned exactly; ``device``: where the
    network runs (``None``: where ``model`` is; the default model: the CPU)."""
    if model is None:
        model = _default_model(resolve_device("cpu" if device is None else device), Prefill(prefill))
    check_image(image)
    check_mask(mask, tuple(image.shape[-2:]))
    if mask.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {mask.shape[0]} masks")
    h, w = image.shape[-2:]
    model = on_device(model, device).eval()
    dev = module_device(model)
    image01 = _pad_to_multiple((image.to(dev, torch.float32) + 1) / 2, DOWNSAMPLING)
    mask_p = _pad_to_multiple(mask.to(dev, torch.float32), DOWNSAMPLING, mode="constant")
    out01 = model(model.inputs(image01, mask_p))[..., :h, :w].clamp(0, 1)
    out = (out01 * 2 - 1).to(image.device, image.dtype)
    if poisson:
        # The network's whole output supplies the gradients, the known pixels the border.
        blended = [poisson_blend(_hwc(o), _hwc(i), m[0].cpu().numpy() > 0.5) for o, i, m in zip(out, image, mask)]
        out = torch.from_numpy(np.stack(blended)).permute(0, 3, 1, 2).clamp(-1, 1).to(image.device, image.dtype)
    return torch.where(mask > 0.5, out, image)
