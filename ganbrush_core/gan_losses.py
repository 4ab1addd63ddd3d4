"""Adversarial, feature-matching and perceptual losses shared by ganbrush's image-to-image GANs
(EdgeConnect in :mod:`inpainting`, SPADE in :mod:`manipulate`).

Discriminators are used without a final sigmoid: the adversarial losses take logits and apply the
sigmoid themselves where the objective needs one (``nsgan``: binary cross-entropy, in its
numerically stable logits form; ``lsgan``: squared error on the sigmoid output), which stays safe
under bf16 autocast; ``hinge`` works on the logits directly.

The perceptual loss runs on the offline VGG16 of :mod:`ganbrush_core.backbones` (inputs RGB
``[N, 3, H, W]`` in [0, 1]); papers that specify VGG19 get VGG16's layers of the same names.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.backbones import VGG16Features

#: The first ReLU of each VGG block: the layers perceptual losses compare by default.
PERCEPTUAL_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class GanLoss(str, enum.Enum):
    """Adversarial objective."""

    NSGAN = "nsgan"
    LSGAN = "lsgan"
    HINGE = "hinge"


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: GanLoss = GanLoss.NSGAN
                       ) -> torch.Tensor:
    """D's loss, the mean of its real and fake terms."""
    kind = GanLoss(kind)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind is GanLoss.NSGAN:
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind is GanLoss.LSGAN:
        real = (torch.sigmoid(real_logits) - 1).square().mean()
        fake = torch.sigmoid(fake_logits).square().mean()
    else:
        real = F.relu(1 - real_logits).mean()
        fake = F.relu(1 + fake_logits).mean()
    return (real + fake) / 2


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: GanLoss = GanLoss.NSGAN) -> torch.Tensor:
    """G's adversarial loss on D's logits for generated samples (non-saturating for ``nsgan``)."""
    kind = GanLoss(kind)
    fake_logits = fake_logits.float()
    if kind is GanLoss.NSGAN:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind is GanLoss.LSGAN:
        return (torch.sigmoid(fake_logits) - 1).square().mean()
    return -fake_logits.mean()


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over discriminator layers of the mean L1 distance, real activations held constant."""
    if len(fake_features) != len(real_features):
        raise ValueError(f"{len(fake_features)} fake and {len(real_features)} real feature maps")
    return sum(F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_features, real_features))


class PerceptualLoss(nn.Module):
    """Weighted sum over ``layers`` (default :data:`PERCEPTUAL_LAYERS`, weight 1 each) of the mean
    L1 distance between VGG16 activations of ``x`` and ``y`` (RGB ``[N, 3, H, W]`` in [0, 1]);
    gradients flow into ``x`` only."""

    def __init__(self, vgg: VGG16Features, layers: tuple[str, ...] = PERCEPTUAL_LAYERS,
                 weights: tuple[float, ...] | None = None):
        super().__init__()
        self.vgg, self.layers = vgg, layers
        self.weights = weights or (1.0,) * len(layers)
        if len(self.weights) != len(layers):
            raise ValueError(f"{len(self.weights)} weights for {len(layers)} layers")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.vgg(x, self.layers)
        with torch.no_grad():
            fy = self.vgg(y, self.layers)
        return sum(w * F.l1_loss(fx[k].float(), fy[k].float()) for k, w in zip(self.layers, self.weights))
