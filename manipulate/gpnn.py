"""Retargeting by generative patch nearest neighbours (GPNN: Granot, Feinstein, Shocher, Bagon and
Irani, "Drop the GAN", CVPR 2022): the same task as InGAN (one image redrawn at another shape,
its patch statistics kept), with no training.

Coarse to fine over an image pyramid: at the coarsest level the source is stretched to the
target's shape; at each level every ``patch`` x ``patch`` patch of the current output is replaced
by its nearest source patch and overlapping patches are averaged, ``iters`` times; the result is
upsampled to the next level. Two details of the paper make it work:

- **Keys and values**: the first round of a level matches the (blurry) upsampled output against
  the source's upsampled coarser level (equally blurry), and copies the sharp source patches.
- **Completeness**: a patch's distance to a source patch is divided by ``alpha`` plus that source
  patch's distance to its closest output patch, so source patches that nothing uses yet become
  cheaper: every part of the source tends to appear (bidirectional similarity), which keeps
  retargeting from filling a wide output with one repeated patch.

Tensors are float32 NCHW RGB in [-1, 1]; shapes are ``(height, width)``. The search is exact
(matrix products, in chunks); its cost grows with the square of the pixel count, so it runs at a
working resolution, and :func:`manipulate.retarget.render_gpnn` brings the photo's own detail
through the final patch correspondences (:func:`source_coordinates`, :func:`warp`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Shape = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class GPNNConfig:
    """Parameters of :func:`gpnn` (the paper's retargeting settings, at this module's scales)."""

    patch: int = 7  # patch side in pixels, at every level
    ratio: float = 0.75  # pyramid: each level is this times the next finer one
    coarsest: int = 21  # shortest side of the coarsest source level (about 3 patches)
    iters: int = 10  # nearest-neighbour rounds per level
    alpha: float = 0.005  # completeness: smaller pushes harder to use every source patch
    chunk: int = 2048  # query patches per distance matrix (memory: chunk x source patches floats)


def patches(x: torch.Tensor, size: int) -> torch.Tensor:
    """All ``size`` x ``size`` patches of ``x`` ``[1, C, h, w]`` at stride 1, ``[N, C * size^2]``,
    row-major over their top-left corners."""
    return F.unfold(x, size).squeeze(0).T.contiguous()


def fold(values: torch.Tensor, shape: Shape, size: int) -> torch.Tensor:
    """The inverse of :func:`patches` for overlapping patches: ``values`` ``[N, C * size^2]`` put
    back on a ``shape`` grid, each pixel the mean of the patches covering it: ``[1, C, h, w]``."""
    total = F.fold(values.T.unsqueeze(0), shape, size)
    count = F.fold(torch.ones_like(values[:1]).T.unsqueeze(0).expand(1, -1, values.shape[0]), shape, size)
    return total / count


def nearest(queries: torch.Tensor, keys: torch.Tensor, alpha: float | None, chunk: int = 2048) -> torch.Tensor:
    """Index into ``keys`` ``[M, D]`` of the nearest key of every query ``[N, D]`` (squared L2 per
    patch element), ``[N]`` long. With ``alpha``, the distance to key ``j`` is divided by
    ``alpha + min_i d(query_i, key_j)`` (GPNN's completeness normalisation)."""
    kk = keys.square().sum(1)
    dim = keys.shape[1]

    def dist(q: torch.Tensor) -> torch.Tensor:
        d = torch.addmm(kk.unsqueeze(0), q, keys.T, alpha=-2.0) + q.square().sum(1, keepdim=True)
        return d.clamp_min_(0) / dim

    norm = None
    if alpha is not None:
        best = torch.full_like(kk, float("inf"))
        for q in queries.split(chunk):
            best = torch.minimum(best, dist(q).amin(0))
        norm = best + alpha
    out = []
    for q in queries.split(chunk):
        d = dist(q)
        out.append((d if norm is None else d / norm).argmin(1))
    return torch.cat(out)


def pyramid_shapes(shape: Shape, ratio: float, levels: int) -> list[Shape]:
    """``shape`` scaled by ``ratio ** k`` for ``k = 0 .. levels - 1`` (finest first)."""
    return [(max(1, round(shape[0] * ratio**k)), max(1, round(shape[1] * ratio**k))) for k in range(levels)]


def num_levels(source: Shape, target: Shape, cfg: GPNNConfig) -> int:
    """Levels such that the coarsest source level's shortest side is about ``cfg.coarsest`` and no
    level of the source or the target is smaller than a patch."""
    levels = 1
    while True:
        s = pyramid_shapes(source, cfg.ratio, levels + 1)[-1]
        t = pyramid_shapes(target, cfg.ratio, levels + 1)[-1]
        if min(s) < cfg.coarsest or min(t) < cfg.patch:
            return levels
        levels += 1


def _resize(x: torch.Tensor, shape: Shape) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    down = shape[0] < x.shape[-2] or shape[1] < x.shape[-1]
    return F.interpolate(x, size=shape, mode="bicubic", align_corners=False, antialias=down).clamp(-1, 1)


@dataclass
class GPNNResult:
    """The output ``image`` ``[1, 3, h, w]`` and, at that level, ``source_of[i]``: the index (into
    :func:`patches` of the source) of the source patch copied to output patch ``i``."""

    image: torch.Tensor
    source_of: torch.Tensor


@torch.no_grad()
def gpnn(source: torch.Tensor, shape: Shape, cfg: GPNNConfig | None = None,
         on_step: Callable[[int, int], None] | None = None) -> GPNNResult:
    """``source`` ``[1, 3, H, W]`` in [-1, 1] redrawn at ``shape`` = (h, w) from its own patches
    (see the module docstring). Deterministic. ``on_step(done, total)`` before each
    nearest-neighbour round (an exception it raises stops the search)."""
    cfg = cfg or GPNNConfig()
    if source.ndim != 4 or source.shape[0] != 1:
        raise ValueError(f"gpnn takes one image [1, C, H, W], got {list(source.shape)}")
    H, W = source.shape[-2:]
    if min(H, W, *shape) < cfg.patch:
        raise ValueError(f"gpnn needs images of at least {cfg.patch} px per side, got {W}x{H} -> {shape[1]}x{shape[0]}")
    source = source.float()
    levels = num_levels((H, W), tuple(shape), cfg)
    src_shapes = pyramid_shapes((H, W), cfg.ratio, levels)
    tgt_shapes = pyramid_shapes(tuple(shape), cfg.ratio, levels)
    pyramid = [_resize(source, s) for s in src_shapes]
    y = _resize(pyramid[-1], tgt_shapes[-1])
    idx = torch.zeros(0, dtype=torch.long)
    for k in reversed(range(levels)):
        y = _resize(y, tgt_shapes[k])
        values = patches(pyramid[k], cfg.patch)
        blurry = patches(_resize(pyramid[k + 1], src_shapes[k]), cfg.patch) if k + 1 < levels else values
        for it in range(cfg.iters):
            if on_step is not None:
                on_step((levels - 1 - k) * cfg.iters + it, levels * cfg.iters)
            idx = nearest(patches(y, cfg.patch), blurry if it == 0 else values, cfg.alpha, cfg.chunk)
            y = fold(values[idx], tgt_shapes[k], cfg.patch)
    return GPNNResult(y, idx)


def source_coordinates(source_of: torch.Tensor, source: Shape, target: Shape, size: int) -> torch.Tensor:
    """Per output pixel, the source pixel it was copied from, ``[h, w, 2]`` float (row, col): from
    the output patch nearest to centring on the pixel, the same offset inside its source patch."""
    h, w = target
    ph, pw = h - size + 1, w - size + 1
    sw = source[1] - size + 1
    rows = torch.arange(h)
    cols = torch.arange(w)
    # The patch whose centre is closest to each pixel (clamped at the borders).
    pr = (rows - size // 2).clamp(0, ph - 1)
    pc = (cols - size // 2).clamp(0, pw - 1)
    which = source_of.view(ph, pw)[pr][:, pc]
    src_r = which // sw + (rows - pr).unsqueeze(1)
    src_c = which % sw + (cols - pc).unsqueeze(0)
    return torch.stack([src_r, src_c], dim=-1).float()


def coherence(coords: torch.Tensor, tolerance: float = 0.5) -> torch.Tensor:
    """Per pixel of a correspondence field ``coords`` ``[h, w, 2]`` (source row, col), the share of
    its 4-neighbours whose source is the same neighbour of its own source (within ``tolerance``
    pixels), ``[h, w]`` in [0, 1]: 1 inside a region copied whole, low where neighbouring pixels
    come from unrelated places (there, carrying the photo's detail through the field would piece
    it together from unrelated blocks)."""
    links_y = ((coords[1:] - coords[:-1] - coords.new_tensor([1.0, 0.0])).abs().sum(-1) < tolerance).float()
    links_x = ((coords[:, 1:] - coords[:, :-1] - coords.new_tensor([0.0, 1.0])).abs().sum(-1) < tolerance).float()

    def per_pixel(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # each link counts for both of its pixels: below/above for y links, right/left for x links
        return F.pad(y, (0, 0, 1, 0)) + F.pad(y, (0, 0, 0, 1)) + F.pad(x, (1, 0)) + F.pad(x, (0, 1))

    return per_pixel(links_y, links_x) / per_pixel(torch.ones_like(links_y), torch.ones_like(links_x)).clamp_min(1)


def warp(image: torch.Tensor, coords: torch.Tensor, frame: Shape) -> torch.Tensor:
    """``image`` ``[1, C, Hi, Wi]`` sampled (bilinear) at ``coords`` ``[h, w, 2]``, given in pixels of
    a ``frame`` = (H, W) grid that spans the same picture (pixel centres at ``k + 0.5``)."""
    H, W = frame
    gy = (coords[..., 0] + 0.5) / H * 2 - 1
    gx = (coords[..., 1] + 0.5) / W * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).to(image)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def upsample_coordinates(coords: torch.Tensor, scale: tuple[float, float], out: Shape) -> torch.Tensor:
    """Working-resolution coordinates ``[h, w, 2]`` carried to an ``out`` grid ``scale`` = (sy, sx)
    times finer: each fine pixel keeps its working pixel's offset (nearest), plus its own
    sub-pixel position, so a block copied whole stays a sharp copy of the photo."""
    sy, sx = scale
    fy = (torch.arange(out[0]) + 0.5) / sy - 0.5  # fine pixel centres in working pixels
    fx = (torch.arange(out[1]) + 0.5) / sx - 0.5
    iy = fy.round().long().clamp(0, coords.shape[0] - 1)
    ix = fx.round().long().clamp(0, coords.shape[1] - 1)
    base = coords[iy][:, ix]  # [out_h, out_w, 2] source working coords of the nearest working pixel
    offset = torch.stack(torch.broadcast_tensors((fy - iy).unsqueeze(1), (fx - ix).unsqueeze(0)), dim=-1)
    return base + offset
