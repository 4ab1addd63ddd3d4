"""Masked local edits: change only a region of a face (Image2StyleGAN++, Abdal et al. 2020).

Two tools, for two needs:

- :func:`local_edit` *optimises* W+ latents so that the render matches the edited face inside the
  mask and the original face outside it (masked MSE + masked LPIPS-VGG16, the paper's spatial
  loss). The result is one coherent generator output, with no seam, but outside the mask it is
  only *close* to the original (the generator cannot change pixels independently).
- :func:`composite` *pastes* the edited pixels into the original through the mask: outside the
  mask the original is kept *exactly*, at the cost of a possible seam at the border (softened by
  ``feather``, which only ever fades inside the mask).

Use :func:`local_edit` for a natural result; run :func:`composite` on its output where the user
needs pixels outside the region to be untouched bit for bit.

Masks are float ``[N or 1, 1, H, W]`` in {0, 1} at the image resolution, **1 = the region that may
change** (ganbrush's "hole" convention, :mod:`ganbrush_core.masks`); :func:`load_mask` reads
white-is-region image files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.checks import check_float, check_int
from ganbrush_core.devices import on_device
from ganbrush_core.masks import check_mask, read_mask
from ganbrush_core.metrics import LPIPS_MIN_SIZE
from inversion.project import MAX_LR, MAX_STEPS
from manipulate.edit import EditResult
from stylegan_ops.networks import Generator

#: ``progress(step, total_steps, losses)``: called after every optimisation step.
ProgressFn = Callable[[int, int, dict[str, float]], None]

_LPIPS_MIN_SIZE = LPIPS_MIN_SIZE["vgg"]  # smaller renders are upsampled for LPIPS-VGG16


def load_mask(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read a mask image (any mode; **white = region that may change**, binarised at 50% grey,
    transparent = keep) as ``[1, 1, size, size]`` float in {0, 1}. Another resolution is resized
    (area average, then binarised), so a mask drawn on a larger copy of the aligned face works.
    Raises :class:`~ganbrush_core.masks.MaskError` for an unreadable or empty mask."""
    mask = read_mask(path, size=size)
    check_mask(mask, size, allow_empty=False, allow_full=True)
    return mask


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def composite(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, feather: float = 0.0) -> torch.Tensor:
    """``edited`` inside ``mask``, ``original`` outside it: pixels where the mask is 0 are the
    original's exactly. ``original``/``edited``: ``[N, 3, H, W]`` in [-1, 1]; ``mask``
    ``[N or 1, 1, H, W]`` in {0, 1}, 1 = take the edit. ``feather`` (px, Gaussian sigma) fades
    the edit in from the mask border inwards, never outwards."""
    if original.shape != edited.shape or original.ndim != 4:
        raise ValueError(f"composite needs two [N, 3, H, W] images of one shape, got {tuple(original.shape)} "
                         f"and {tuple(edited.shape)}")
    check_mask(mask, tuple(original.shape[-2:]), allow_empty=False, allow_full=True)
    weight = mask.to(original)
    if feather > 0:
        # Blurred mask is 0.5 on the border: rescaling [0.5, 1] -> [0, 1] keeps it 0 outside.
        weight = ((_gaussian_blur(weight, feather) - 0.5) * 2).clamp(0, 1) * weight
    return torch.lerp(original, edited.to(original), weight)


def _masked_mse(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the pixels where ``weight`` is 1, per image -> ``[N]``."""
    area = (weight.flatten(1).sum(1) * x.shape[1]).clamp_min(1.0)
    return ((x - y).square() * weight).flatten(1).sum(1) / area


def _lpips_input(x: torch.Tensor) -> torch.Tensor:
    if min(x.shape[-2:]) >= _LPIPS_MIN_SIZE:
        return x
    return F.interpolate(x, size=(_LPIPS_MIN_SIZE, _LPIPS_MIN_SIZE), mode="bilinear", align_corners=False)


def check_local_edit_settings(steps: object, lr: object = 0.01) -> None:
    """:class:`ValueError` naming the range unless ``steps`` is a whole number in 0..``MAX_STEPS``
    (the inversion's cap) and ``lr`` a finite number in (0, ``MAX_LR``]."""
    check_int("local edit steps (--local-steps)", steps, 0, MAX_STEPS)
    check_float("local edit lr", lr, 0, MAX_LR, lo_open=True)


def local_edit(G: Generator, original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, steps: int = 100,
               lr: float = 0.01, noises: list[torch.Tensor] | None = None, progress: ProgressFn | None = None,
               perceptual: nn.Module | None = None, perceptual_weight: float = 1.0,
               device: str | torch.device | None = None) -> EditResult:
    """Image2StyleGAN++-style masked edit: W+ latents whose render follows ``edited`` inside
    ``mask`` and ``original`` outside it.

    ``original``, ``edited``: ``ws`` ``[N, num_ws, w_dim]`` (e.g. an inversion and
    :func:`manipulate.edit` of it); ``G`` the generator that renders them (PTI: the tuned one,
    ``EditResult.generator``); ``noises`` its noise maps (default: constant noise). ``mask``
    ``[N or 1, 1, H, W]`` in {0, 1}, 1 = region that may change. Adam on ``ws`` (initialised at
    ``edited``) for ``steps`` steps of masked MSE + ``perceptual_weight`` x masked LPIPS-VGG16
    (each image multiplied by the mask, then compared), inside and outside.
    The result is close to, not equal to, the original outside the mask: pass it to
    :func:`composite` for an exact outside. ``G`` is not modified. ``device``: where the
    optimisation runs (``None``: ``G``'s device); ``ws`` and ``image`` come back on the CPU.
    """
    if original.shape != edited.shape or original.ndim != 3 or tuple(original.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(f"original and edited must both be [N, {G.num_ws}, {G.w_dim}] ws, got "
                         f"{tuple(original.shape)} and {tuple(edited.shape)}")
    check_local_edit_settings(steps, lr)
    check_mask(mask, G.img_resolution, allow_empty=False, allow_full=True)
    G = on_device(G, device)
    device = G.w_avg.device
    if perceptual is None:
        from ganbrush_core.metrics import lpips_model

        perceptual = lpips_model("vgg", device=device)
    noises = None if noises is None else [m.to(device) for m in noises]
    inside = mask.to(device=device, dtype=torch.float32)
    outside = 1 - inside
    was_training = G.training
    frozen = [p.requires_grad for p in G.parameters()]
    G.eval().requires_grad_(False)
    try:
        with torch.no_grad():
            keep = G.synthesis(original.to(device).float(), noises=noises)
            want = G.synthesis(edited.to(device).float(), noises=noises)
        ws = edited.detach().to(device).float().clone().requires_grad_(True)
        opt = torch.optim.Adam([ws], lr=lr)
        for step in range(steps):
            img = G.synthesis(ws, noises=noises)
            mse_in = _masked_mse(img, want, inside)
            mse_out = _masked_mse(img, keep, outside)
            lp_in = perceptual(_lpips_input(img * inside), _lpips_input(want * inside))
            lp_out = perceptual(_lpips_input(img * outside), _lpips_input(keep * outside))
            loss = (mse_in + mse_out + perceptual_weight * (lp_in + lp_out)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None:
                terms = {"mse_in": mse_in, "mse_out": mse_out, "lpips_in": lp_in, "lpips_out": lp_out}
                progress(step + 1, steps, {k: float(v.detach().mean()) for k, v in terms.items()})
        with torch.no_grad():
            image = G.synthesis(ws.detach(), noises=noises)
    finally:
        for p, flag in zip(G.parameters(), frozen):
            p.requires_grad_(flag)
        G.train(was_training)
    return EditResult(ws=ws.detach().cpu(), image=image.cpu(), generator=G)
