"""InGAN networks (Shocher, Bagon, Isola and Irani, ICCV 2019): a generator that redraws one image
at any output shape, and the multi-scale patch discriminator that judges its patches.

Both are trained on a single image (:mod:`manipulate.ingan_train`). Tensors are float32 NCHW RGB
in [-1, 1]; shapes are ``(height, width)`` in pixels.

The generator is encoder -> geometric transformation layer -> residual blocks -> decoder. The
geometric layer resamples the encoded feature map (and the skip features) to the output's shape
with an affine ``grid_sample``: for a change of size and aspect ratio the affine map is a scaling,
so the output shape alone decides it. Everything after it is convolutional, so the decoder
re-draws the stretched features as patches of the image rather than stretched patches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int]  # (height, width) in pixels

#: The generator's input and output sides are at least this (two stride-2 levels leave 4 px).
MIN_SIDE = 16


@dataclass(frozen=True)
class InGANConfig:
    """Architecture of :class:`Generator` and :class:`Discriminator` (stored with the weights)."""

    g_channels: int = 16  # first encoder level, doubled at each downsampling (32: 2.3x slower and, at
    # the default learning rates, diverged on all five benchmark images within 400 steps)
    g_blocks: int = 4  # residual blocks after the geometric layer
    skips: bool = True  # encoder features, resampled like the bottleneck, join the decoder
    image_skip: bool = True  # G predicts a correction of the resampled input image (see Generator)
    d_channels: int = 32
    d_layers: int = 4  # 3x3 convolutions per scale: each output sees a ~(2 * d_layers + 1) px patch
    d_scales: int = 3  # image pyramid levels, each halving the resolution

    def to_dict(self) -> dict:
        return asdict(self)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def resample(x: torch.Tensor, shape: Shape) -> torch.Tensor:
    """The geometric transformation layer: ``x`` ``[N, C, h, w]`` mapped onto a ``shape`` grid by
    the affine scaling that sends the input's frame onto the output's (``grid_sample``, bilinear,
    border padding). The same frame convention as ``F.interpolate(align_corners=False)``, so the
    identity shape returns ``x`` unchanged."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *shape], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _half(shape: Shape) -> Shape:
    return ((shape[0] + 1) // 2, (shape[1] + 1) // 2)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), _act(),
                                  nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """``G(x, shape)``: image ``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, *shape]`` in [-1, 1] (in
    training mode, with ``image_skip``, it may overshoot that range slightly).

    Encoder: a 5x5 conv and two stride-2 convs (sizes ``H``, ``ceil(H/2)``, ``ceil(H/4)``).
    The geometric layer maps the bottleneck (and, with ``skips``, the two encoder levels) to the
    corresponding sizes of ``shape``; the decoder upsamples (nearest, to the exact size) back to
    ``shape``. Reflect padding everywhere: zero padding would tell the network where the border
    is, and the border moves when the shape changes.

    With ``image_skip`` the input image itself goes through the geometric layer too and the
    decoder adds a correction to it (its last layer starts at zero): an untrained G is a sharp
    stretch that reconstructs the input exactly, and training spends its few steps on redrawing
    the stretched patches rather than on learning to copy the photo."""

    def __init__(self, cfg: InGANConfig = InGANConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.g_channels, 2 * cfg.g_channels, 4 * cfg.g_channels
        self.enc0 = nn.Sequential(nn.Conv2d(3, c1, 5, padding=2, padding_mode="reflect"), _act())
        self.enc1 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1, padding_mode="reflect"), _act())
        self.enc2 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1, padding_mode="reflect"), _act())
        self.blocks = nn.Sequential(*(ResBlock(c3) for _ in range(cfg.g_blocks)))
        self.dec1 = nn.Sequential(nn.Conv2d(c3 + (c2 if cfg.skips else 0), c2, 3, padding=1, padding_mode="reflect"),
                                  _act())
        self.dec0 = nn.Sequential(nn.Conv2d(c2 + (c1 if cfg.skips else 0), c1, 3, padding=1, padding_mode="reflect"),
                                  _act())
        self.to_rgb = nn.Conv2d(c1, 3, 5, padding=2, padding_mode="reflect")
        if cfg.image_skip:
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)

    def forward(self, x: torch.Tensor, shape: Shape | None = None) -> torch.Tensor:
        shape = tuple(x.shape[-2:]) if shape is None else (int(shape[0]), int(shape[1]))
        if min(*x.shape[-2:], *shape) < MIN_SIDE:
            raise ValueError(f"InGAN input {tuple(x.shape[-2:])} and output {shape} must be at least "
                             f"{MIN_SIDE} px per side")
        s1 = _half(shape)
        s2 = _half(s1)
        f0 = self.enc0(x)
        f1 = self.enc1(f0)
        f2 = self.enc2(f1)
        h = self.blocks(resample(f2, s2))
        h = F.interpolate(h, size=s1, mode="nearest")
        if self.cfg.skips:
            h = torch.cat([h, resample(f1, s1)], 1)
        h = self.dec1(h)
        h = F.interpolate(h, size=shape, mode="nearest")
        if self.cfg.skips:
            h = torch.cat([h, resample(f0, shape)], 1)
        out = self.to_rgb(self.dec0(h))
        if self.cfg.image_skip:
            out = resample(x, shape) + out
            # Clamped only in eval mode: a clamp in training has no gradient where it bites, and a
            # correction that overshoots there would stay stuck (the image goes black for good).
            return out if self.training else out.clamp(-1, 1)
        return torch.tanh(out)


class Discriminator(nn.Module):
    """Multi-scale fully-convolutional patch discriminator.

    ``D(x)`` returns one logit map per pyramid level (``x`` and ``d_scales - 1`` bilinear halvings),
    each from its own small conv net of 3x3 layers: patches of about ``2 * d_layers + 1`` px at
    the full scale, and twice as large (relative to the image) at each coarser one. No padding
    (a patch either fits or is not judged), so levels smaller than the receptive field are skipped."""

    def __init__(self, cfg: InGANConfig = InGANConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.heads = nn.ModuleList(self._head(cfg) for _ in range(cfg.d_scales))

    @staticmethod
    def _head(cfg: InGANConfig) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(3, cfg.d_channels, 3), _act()]
        for _ in range(cfg.d_layers - 2):
            layers += [nn.Conv2d(cfg.d_channels, cfg.d_channels, 3), _act()]
        layers.append(nn.Conv2d(cfg.d_channels, 1, 3))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, head in enumerate(self.heads):
            if i:
                x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
            if min(x.shape[-2:]) < 2 * self.cfg.d_layers + 1:
                break
            out.append(head(x))
        return out
