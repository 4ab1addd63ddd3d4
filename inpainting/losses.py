"""EdgeConnect's training objectives (Nazeri et al. 2019 and the official knazeri/edge-connect code).

- Edge model G1: adversarial loss (weight 1) + discriminator feature matching (weight 10).
- Inpainting model G2: L1 divided by the mean of the mask (weight 1), adversarial (0.1),
  perceptual (0.1), style (250).

Images and edge maps are in [0, 1], masks ``[N, 1, H, W]`` with 1 = hole (the networks' own
convention, :mod:`inpainting.networks`). The adversarial, feature-matching and perceptual
losses live in :mod:`ganbrush_core.gan_losses` (shared with SPADE) and are imported here; the
official ``GAN_LOSS`` setting is :class:`GanLoss` (``nsgan`` its default). Discriminators are
used without their final sigmoid: the adversarial losses take logits and apply the sigmoid
themselves where the official loss does (``nsgan``: binary cross-entropy, here in its numerically
stable logits form; ``lsgan``: squared error on the sigmoid output), which is the same function
and stays safe under bf16 autocast.

Perceptual and style losses use VGG16, not the paper's VGG19 (no offline source of VGG19 weights
exists; see :mod:`ganbrush_core.backbones`). Perceptual: L1 between relu1_1 ... relu5_1 (weight 1
each), the same layer names in both networks. Style: L1 between Gram matrices; VGG19's relu2_2,
relu3_4, relu4_4, relu5_2 map to VGG16's relu2_2, relu3_3 (the last ReLU of block 3), relu4_3
(last of block 4), relu5_2. The VGG16 input is ImageNet-normalised (the official code feeds
[0, 1] images unnormalised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.backbones import VGG16Features
from ganbrush_core.distributed import all_mean
from ganbrush_core.gan_losses import (  # noqa: F401  (EdgeConnect's objectives, shared with SPADE)
    PERCEPTUAL_LAYERS,
    GanLoss,
    PerceptualLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

STYLE_LAYERS: tuple[str, ...] = ("relu2_2", "relu3_3", "relu4_3", "relu5_2")
# The paper's VGG19 style layers and their VGG16 stand-ins (for model cards and logs).
STYLE_LAYERS_VGG19: dict[str, str] = {"relu2_2": "relu2_2", "relu3_4": "relu3_3", "relu4_4": "relu4_3",
                                      "relu5_2": "relu5_2"}


def hole_l1_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the whole image divided by the hole fraction (the official normalisation: a
    small hole is not drowned by the many pixels that are easy to reproduce). Under torchrun the
    hole fraction is that of the global batch, so the ranks' mean is the one-process loss."""
    return F.l1_loss(output.float(), target.float()) / all_mean(mask.float().mean()).clamp_min(1e-8)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, C]`` channel correlations divided by ``C * H * W``."""
    n, c, h, w = features.shape
    # float32 even under bf16 autocast: the style weight (250) magnifies rounding in the products.
    with torch.autocast(features.device.type, enabled=False):
        f = features.float().reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)


class StyleLoss(nn.Module):
    """Sum over :data:`STYLE_LAYERS` of the mean L1 distance between Gram matrices of VGG16
    activations of ``x`` and ``y`` (RGB ``[N, 3, H, W]`` in [0, 1]); gradients flow into ``x`` only."""

    def __init__(self, vgg: VGG16Features, layers: tuple[str, ...] = STYLE_LAYERS):
        super().__init__()
        self.vgg, self.layers = vgg, layers

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.vgg(x, self.layers)
        with torch.no_grad():
            fy = self.vgg(y, self.layers)
        return sum(F.l1_loss(gram_matrix(fx[k]), gram_matrix(fy[k])) for k in self.layers)
