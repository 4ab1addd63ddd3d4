"""Projection losses: pixel MSE and the StyleGAN2 projector's noise regularisation.

Images are float NCHW RGB in [-1, 1]; noise maps are ``[N, 1, r, r]`` (one per synthesis layer,
as :meth:`Generator.noise_maps`). Per-image values are returned so that a batch of images is
optimised as independent problems: callers sum them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The noise regulariser stops downsampling once a map is this small (Karras et al. 2020).
NOISE_REG_MIN_SIZE = 8


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of ``[N, C, H, W]`` images (in [-1, 1] units), shape ``[N]``."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"mse needs two [N, C, H, W] batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x - y).square().flatten(1).mean(1)


def _check_noises(noises: list[torch.Tensor]) -> None:
    if not noises:
        raise ValueError("no noise maps given; pass the generator's noise maps ([N, 1, r, r] each)")
    for m in noises:
        if m.ndim != 4 or m.shape[1] != 1:
            raise ValueError(f"noise maps must be [N, 1, r, r], got {tuple(m.shape)}")


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 projector noise penalty (Karras et al. 2020, appendix), a scalar.

    For each map and each of its 2x2-average-pooled versions down to 8 px, the squared
    autocorrelation at a one-pixel shift in x and in y (circular, as in the paper's code). White
    noise scores about 0; spatially smooth noise, which could carry image content, scores high.
    The penalty is computed per image and summed over the batch, so each image's noise is
    regularised independently and a batch of one gives the official value.
    """
    _check_noises(noises)
    total = noises[0].new_zeros(noises[0].shape[0])
    for m in noises:
        while True:
            for dim in (2, 3):
                total = total + (m * torch.roll(m, shifts=1, dims=dim)).mean(dim=(1, 2, 3)).square()
            if min(m.shape[-2:]) <= NOISE_REG_MIN_SIZE:
                break
            m = F.avg_pool2d(m, kernel_size=2)
    return total.sum()


@torch.no_grad()
def normalize_noises_(noises: list[torch.Tensor]) -> None:
    """In place: each map of each image to zero mean and unit (population) standard deviation."""
    _check_noises(noises)
    for m in noises:
        m.sub_(m.mean(dim=(1, 2, 3), keepdim=True))
        m.mul_(m.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt())
