"""Full-reference image metrics for the inversion benchmarks: PSNR and SSIM.

Inputs are float ``[N, 3, H, W]`` RGB images in [-1, 1] (the API convention), compared per
image; results are ``[N]`` tensors in the input dtype. The data range is therefore 2, which is
the same as 255 for the uint8 images the values usually refer to: a pixel error of 1/127.5 here
is one grey level there. Computed in float64. LPIPS lives in :mod:`inversion.perceptual`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Width of [-1, 1]; the ``L`` of PSNR and SSIM.
DATA_RANGE = 2.0
# SSIM constants of Wang et al. 2004 (and scikit-image's gaussian_weights=True defaults).
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's default truncation at 3.5 sigma -> an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03


class MetricInputError(ValueError):
    """The two image batches cannot be compared."""


def _check(x: torch.Tensor, y: torch.Tensor, min_size: int = 1) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise MetricInputError(f"need two [N, C, H, W] image batches of one shape, got {tuple(x.shape)} and "
                               f"{tuple(y.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise MetricInputError(f"images must be at least {min_size} px per side for this metric, got "
                               f"{tuple(x.shape[-2:])}")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``[N]``; ``inf`` for identical images.

    ``10 log10(L^2 / MSE)`` with ``L = 2`` (images in [-1, 1]), equal to the usual uint8 PSNR
    with peak 255 of the same images.
    """
    _check(x, y)
    err = (x.double() - y.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(DATA_RANGE**2 / err)).to(x.dtype)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _blur_valid(img: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, keeping only windows fully inside the image."""
    c = img.shape[1]
    k = window.numel()
    img = F.conv2d(img, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(img, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, ``[N]``, in [-1, 1] (1: identical).

    Gaussian window sigma 1.5 (11x11), K1 = 0.01, K2 = 0.03, data range 2, population
    (co)variances; the SSIM map is averaged over the positions where the window lies fully inside
    the image and over the channels (each RGB channel separately). This is
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=2, channel_axis=-1)`` on each HWC image, whose
    border crop of (win_size - 1) / 2 px discards exactly the padded positions. Images must be at
    least 11 px per side.
    """
    _check(x, y, min_size=2 * SSIM_RADIUS + 1)
    a, b = x.double(), y.double()
    window = _gaussian_window(a.dtype, a.device)
    mu_a, mu_b = _blur_valid(a, window), _blur_valid(b, window)
    var_a = _blur_valid(a * a, window) - mu_a * mu_a
    var_b = _blur_valid(b * b, window) - mu_b * mu_b
    cov = _blur_valid(a * b, window) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1).to(x.dtype)

