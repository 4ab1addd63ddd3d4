"""StyleGAN2 objective: non-saturating logistic loss, lazy R1, path-length regularisation.

Images are float NCHW in [-1, 1]; ``D`` returns logits ``[N, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganbrush_core.distributed import all_mean, randn_rows
from stylegan_ops.networks import Generator

Augment = Callable[[torch.Tensor], torch.Tensor]


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: ``-log sigmoid(D(G(z)))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, augment: Augment) -> tuple[torch.Tensor, torch.Tensor]:
    """``||grad_x D(aug(x))||^2`` per sample, averaged (Mescheder et al. 2018), and the logits."""
    real = real.detach().requires_grad_(True)
    logits = D(augment(real))
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean(), logits


class PathLengthRegularizer:
    """Keeps ``|J_w^T y|`` (image change per unit change of w, random image-space direction y)
    close to its running mean, so the mapping from W to images is smooth (Karras et al. 2020).
    Under torchrun the running mean follows the mean over all ranks' samples."""

    def __init__(self, decay: float = 0.01) -> None:
        self.decay = decay
        self.mean = torch.zeros([])

    def __call__(self, G: Generator, ws: torch.Tensor, noises: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``noises``: the synthesis noise maps (``None``: drawn at random)."""
        ws = ws.detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="random", noises=noises)
        noise = randn_rows(*img.shape, device=img.device, dtype=img.dtype) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        self.mean = self.mean.to(lengths.device)
        self.mean = self.mean.lerp(all_mean(lengths.mean().detach()), self.decay)
        return (lengths - self.mean).square().mean()

    def state_dict(self) -> dict:
        return {"mean": self.mean.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"]
