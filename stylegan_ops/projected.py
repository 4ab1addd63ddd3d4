"""Projected GAN discriminator: small trainable heads on fixed random projections of frozen
pretrained features.

After Sauer, Chitta, Müller and Geiger, "Projected GANs Converge Faster", NeurIPS 2021. The
image goes through a frozen ImageNet network (here the offline VGG16 of
:mod:`ganbrush_core.backbones`; the paper uses EfficientNet-lite), whose activations at a few
depths are mixed by fixed random projections that are never trained:

- cross-channel mixing (CCM): a random 1x1 conv per tapped layer, to ``proj_channels`` channels;
- cross-scale mixing (CSM, ``cross_scale=True``): a top-down pass as in a feature pyramid, where
  each level adds the level below it, passed through a random 3x3 conv and upsampled to its size.

One small discriminator per level (stride-2 4x4 convs with spectral norm, batch norm and
LeakyReLU(0.2) down to about 4x4 px, then a 3x3 conv to one channel) gives a map of logits; the
maps of all levels are flattened and concatenated, and the paper trains them with the hinge loss
(:func:`ganbrush_core.gan_losses.discriminator_loss` with ``GanLoss.HINGE``).

What is stored where: the random projections are buffers, so they are in ``state_dict()`` (a
resumed run must see exactly the same projections) and outside ``parameters()``; the VGG16 is
held outside the module tree, so its 15M weights are neither in ``state_dict()`` (they come from
the backbone cache) nor in ``parameters()``, and ``requires_grad_(True)`` on the discriminator
cannot unfreeze it. ``parameters()`` is therefore exactly what D's optimiser should take.
Gradients still flow through the frozen parts to the input image (G learns through D).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbrush_core.backbones import VGG16_LAYERS, VGG16Features
from ganbrush_core.weights import config_from_dict


@dataclass(frozen=True)
class ProjectedConfig:
    """Everything needed to rebuild a :class:`ProjectedDiscriminator` (JSON-able via :meth:`to_dict`).

    Defaults, for 64 px faces on a CPU:

    - ``layers``: the last ReLU of VGG16's first four blocks, at 1, 1/2, 1/4 and 1/8 of the input
      size (64, 32, 16 and 8 px at 64 px): like the paper's four feature stages, from edges and
      texture to parts. ``relu5_3`` would be 4 px at 64 px and costs another 512-channel block;
      ending at ``relu3_3`` saves a third of VGG's multiply-adds but only 15-20% of a G+D step on
      this CPU (the 8 px block runs efficiently), at the price of the part-level features.
    - ``proj_channels``: half of VGG's channels at those layers (64, 128, 256, 512). A random
      projection to fewer channels keeps most of what the heads can use and keeps their first
      convs cheap; the paper's CCM widths (64 to 512) are of the same order.
    - ``head_channels``: 32, the width of each head's first conv; it doubles at each further
      stride-2 conv (at most ``8 * head_channels``), as the paper's mini-discriminators widen as
      they shrink. At 64 the heads' forward cost about a fifth of VGG's (most of it in the 64 px
      head) and held 4.0M parameters; 32 quarters both.
    - ``seed``: of the random projections only (the heads take torch's global generator, as
      every other network does), so two runs with one seed see the same feature space.
    - ``cross_scale``: the paper's best variant uses CCM and CSM together.
    """

    img_resolution: int = 64
    layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    proj_channels: tuple[int, ...] = (32, 64, 128, 256)
    head_channels: int = 32  # 64: 4.0M parameters, a 26 MB packed optimiser state, and slower
    seed: int = 0
    cross_scale: bool = True

    def __post_init__(self) -> None:
        # JSON gives lists: store tuples, so configs compare and hash alike.
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "proj_channels", tuple(int(c) for c in self.proj_channels))
        unknown = [name for name in self.layers if name not in VGG16_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {', '.join(VGG16_LAYERS)}")
        indices = [VGG16_LAYERS.index(name) for name in self.layers]
        if not indices or any(b <= a for a, b in zip(indices, indices[1:])):
            raise ValueError(f"layers must be one or more distinct VGG16 layers in network order, got {self.layers}")
        if len(self.proj_channels) != len(self.layers) or min(self.proj_channels) < 1:
            raise ValueError(f"proj_channels needs one positive channel count per layer ({len(self.layers)}), "
                             f"got {self.proj_channels}")
        if self.head_channels < 1:
            raise ValueError(f"head_channels must be >= 1, got {self.head_channels}")
        for name, size in zip(self.layers, self.tap_sizes()):
            if size < 2:
                raise ValueError(f"img_resolution {self.img_resolution} leaves VGG16 layer {name} at {size} px; "
                                 f"it needs at least {2 << _pools_before(name)} px")

    def tap_sizes(self) -> tuple[int, ...]:
        """Side length in px of each tapped layer's activation for ``img_resolution`` input."""
        return tuple(self.img_resolution >> _pools_before(name) for name in self.layers)

    def tap_channels(self) -> tuple[int, ...]:
        """VGG16's channel count at each tapped layer."""
        return tuple(_vgg_channels(name) for name in self.layers)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["proj_channels"] = list(self.layers), list(self.proj_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ProjectedConfig:
        return config_from_dict(cls, d, "projected discriminator config")


def _pools_before(name: str) -> int:
    return sum(1 for layer in VGG16_LAYERS[: VGG16_LAYERS.index(name)] if layer.startswith("pool"))


def _vgg_channels(name: str) -> int:
    # Names are conv<b>_<k>, relu<b>_<k> or pool<b>: block b has 64, 128, 256, 512, 512 channels.
    return (64, 128, 256, 512, 512)[int(name[4]) - 1]


class FixedConv(nn.Module):
    """A bias-free conv with fixed random weights (a buffer, in ``state_dict()``), "same" padding.

    Weights are Gaussian with std ``1 / sqrt(fan_in)``, so the output's mean square about equals
    the input's: the levels of the cross-scale sum keep comparable scales.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, generator: torch.Generator) -> None:
        super().__init__()
        fan_in = in_channels * kernel_size**2
        weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size, generator=generator)
        self.register_buffer("weight", weight / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)


def _head(in_channels: int, size: int, width: int) -> nn.Sequential:
    """Mini-discriminator for a ``size`` px map: stride-2 4x4 convs (SN, BN, LeakyReLU 0.2) down to
    about 4 px (at least one), then a 3x3 conv to one logit channel."""
    downs = max(1, round(math.log2(size / 4)))
    layers: list[nn.Module] = []
    c_in = in_channels
    for i in range(downs):
        c_out = width * 2 ** min(i, 3)
        layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False)),
                   nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        c_in = c_out
    layers.append(spectral_norm(nn.Conv2d(c_in, 1, 3, padding=1)))
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """Projected GAN discriminator: image ``[N, 3, R, R]`` in [-1, 1] (``R = cfg.img_resolution``)
    -> logits ``[N, K]``, float32, where ``K = sum of h_i * w_i`` over the heads' logit maps
    (64 for the default config at 64 px: four heads of 4x4). See the module docstring.

    ``vgg``: a :class:`VGG16Features` to use (shared, never trained; moving this module with
    ``.to()`` moves it too); by default one is loaded from the backbone cache.
    Works under ``torch.autocast`` (bf16); the logits are returned as float32.
    """

    def __init__(self, cfg: ProjectedConfig | None = None, vgg: VGG16Features | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ProjectedConfig()
        # Not a submodule: out of state_dict(), parameters() and requires_grad_() (module docstring).
        object.__setattr__(self, "vgg", vgg if vgg is not None else VGG16Features())
        generator = torch.Generator().manual_seed(cfg.seed)
        self.ccm = nn.ModuleList(FixedConv(c_in, c_out, 1, generator)
                                 for c_in, c_out in zip(cfg.tap_channels(), cfg.proj_channels))
        # csm[i] carries level i + 1 (deeper) into level i's channels before upsampling.
        self.csm = nn.ModuleList(FixedConv(cfg.proj_channels[i + 1], cfg.proj_channels[i], 3, generator)
                                 for i in range(len(cfg.layers) - 1)) if cfg.cross_scale else None
        self.heads = nn.ModuleList(_head(c, size, cfg.head_channels)
                                   for c, size in zip(cfg.proj_channels, cfg.tap_sizes()))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ProjectedDiscriminator:
        # .to() / .cuda() / .half() reach the VGG although it is no submodule.
        self.vgg._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The projected features the heads see, shallow to deep: ``[N, proj_channels[i], s_i, s_i]``."""
        r = self.cfg.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (3, r, r):
            raise ValueError(f"expected images [N, 3, {r}, {r}] in [-1, 1], got {tuple(img.shape)}")
        taps = self.vgg((img.float() + 1) / 2, self.cfg.layers)
        levels = [ccm(taps[name]) for ccm, name in zip(self.ccm, self.cfg.layers)]
        if self.csm is not None:
            # Top-down: each level adds the one below it (already merged), with gain sqrt(1/2) so
            # the sum keeps the scale of its parts and no level drowns the others.
            for i in range(len(levels) - 2, -1, -1):
                deeper = F.interpolate(self.csm[i](levels[i + 1]), size=levels[i].shape[-2:], mode="bilinear",
                                       align_corners=False)
                levels[i] = (levels[i] + deeper.to(levels[i].dtype)) * math.sqrt(0.5)
        return levels

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        logits = [head(x).flatten(1) for head, x in zip(self.heads, self.features(img))]
        return torch.cat(logits, dim=1).float()
