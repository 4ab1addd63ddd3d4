"""EdgeConnect networks (Nazeri et al. 2019): edge generator G1, inpainting generator G2 and the
70x70 PatchGAN discriminators.

The generators work at the network level exactly like the official models: inputs in [0, 1],
masks with 1 = hole, channels concatenated in the official order (see :func:`edge_inputs` and
:func:`inpaint_inputs`). Module names follow the official layout, so an official state dict only
needs its spectral-norm entries renamed (:mod:`inpainting.checkpoints`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbrush_core.weights import config_from_dict

# Two stride-2 convolutions in the encoder, two stride-2 transposed ones in the decoder.
SIZE_MULTIPLE = 4


class GeneratorKind(str, enum.Enum):
    """Which EdgeConnect generator: ``EDGE`` (G1) or ``INPAINT`` (G2)."""

    EDGE = "edge"
    INPAINT = "inpaint"

    @property
    def in_channels(self) -> int:
        # G1: masked grey + masked edges + mask; G2: masked RGB + composite edges.
        return 3 if self is GeneratorKind.EDGE else 4

    @property
    def out_channels(self) -> int:
        return 1 if self is GeneratorKind.EDGE else 3


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of one EdgeConnect generator. Defaults are the paper's (64 channels, 8 blocks;
    spectral norm in G1 only)."""

    kind: GeneratorKind
    channels: int = 64
    residual_blocks: int = 8
    spectral_norm: bool | None = None  # None: the paper's choice for ``kind``

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", GeneratorKind(self.kind))
        if self.spectral_norm is None:
            object.__setattr__(self, "spectral_norm", self.kind is GeneratorKind.EDGE)
        if self.channels < 1 or self.residual_blocks < 0:
            raise ValueError(f"invalid generator config: channels {self.channels}, blocks {self.residual_blocks}")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return config_from_dict(cls, d, "generator config")


def _conv(module: nn.Conv2d | nn.ConvTranspose2d, use: bool, gain: float = 0.02) -> nn.Module:
    """N(0, ``gain``) weights and zero bias (the official ``init_weights('normal')``), then spectral
    norm if ``use``: initialising first lets the parametrization's power iteration start from the
    final weights, so sigma is right from the first eval-mode call."""
    nn.init.normal_(module.weight, 0.0, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return spectral_norm(module) if use else module


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions (the first dilated) with instance norm; no ReLU after the sum."""

    def __init__(self, dim: int, dilation: int = 2, use_spectral_norm: bool = False):
        super().__init__()
        # Spectral norm replaces the bias (as in the official model); without it the bias stays.
        bias = not use_spectral_norm
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _conv(nn.Conv2d(dim, dim, 3, dilation=dilation, bias=bias), use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _conv(nn.Conv2d(dim, dim, 3, bias=bias), use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class EdgeConnectGenerator(nn.Module):
    """Encoder (7x7 conv, two stride-2 4x4 convs), residual blocks with dilation 2, decoder (two
    stride-2 4x4 transposed convs, 7x7 conv), instance norm throughout.

    ``forward(x)``: ``x`` is ``[N, in_channels, H, W]`` in [0, 1] with H and W multiples of 4; the
    result is ``[N, out_channels, H, W]`` in [0, 1] (sigmoid edge probability for G1, ``(tanh+1)/2``
    RGB for G2).
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        sn, c = bool(cfg.spectral_norm), cfg.channels
        in_ch, out_ch = cfg.kind.in_channels, cfg.kind.out_channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            _conv(nn.Conv2d(in_ch, c, 7), sn),
            nn.InstanceNorm2d(c, track_running_stats=False),
            nn.ReLU(True),
            _conv(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(2 * c, track_running_stats=False),
            nn.ReLU(True),
            _conv(nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(4 * c, track_running_stats=False),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(*(ResidualBlock(4 * c, 2, sn) for _ in range(cfg.residual_blocks)))
        self.decoder = nn.Sequential(
            _conv(nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(2 * c, track_running_stats=False),
            nn.ReLU(True),
            _conv(nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), sn),
            nn.InstanceNorm2d(c, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            # The official output layer has no spectral norm in either generator.
            _conv(nn.Conv2d(c, out_ch, 7), False),
        )

    @property
    def kind(self) -> GeneratorKind:
        return self.cfg.kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.cfg.kind.in_channels
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(f"{self.cfg.kind.value} generator expects [N, {expected}, H, W], got {list(x.shape)}")
        if x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(
                f"height and width must be multiples of {SIZE_MULTIPLE}, got {tuple(x.shape[-2:])}; "
                "pad the input (inpainting.inpaint does this)"
            )
        y = self.decoder(self.middle(self.encoder(x)))
        if self.cfg.kind is GeneratorKind.EDGE:
            return torch.sigmoid(y)
        return (torch.tanh(y) + 1) / 2


class EdgeGenerator(EdgeConnectGenerator):
    """G1: ``[masked grey, masked edges, mask]`` -> edge probability, all in [0, 1]."""

    def __init__(self, channels: int = 64, residual_blocks: int = 8, use_spectral_norm: bool = True):
        super().__init__(GeneratorConfig(GeneratorKind.EDGE, channels, residual_blocks, use_spectral_norm))


class InpaintGenerator(EdgeConnectGenerator):
    """G2: ``[masked RGB, composite edges]`` -> RGB, all in [0, 1]."""

    def __init__(self, channels: int = 64, residual_blocks: int = 8, use_spectral_norm: bool = False):
        super().__init__(GeneratorConfig(GeneratorKind.INPAINT, channels, residual_blocks, use_spectral_norm))


def build_generator(cfg: GeneratorConfig) -> EdgeConnectGenerator:
    """The generator class for ``cfg.kind``, built from ``cfg``."""
    cls = EdgeGenerator if cfg.kind is GeneratorKind.EDGE else InpaintGenerator
    return cls(cfg.channels, cfg.residual_blocks, bool(cfg.spectral_norm))


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: three stride-2 and two stride-1 4x4 convs (each output pixel sees a 70x70
    input patch). ``forward`` returns the logits (or probabilities with ``use_sigmoid``) and the
    five layer activations (for the feature-matching loss)."""

    def __init__(self, in_channels: int, channels: int = 64, use_sigmoid: bool = True, use_spectral_norm: bool = True):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        bias = not use_spectral_norm
        widths = [in_channels, channels, 2 * channels, 4 * channels, 8 * channels]
        strides = [2, 2, 2, 1]
        layers = []
        for cin, cout, stride in zip(widths[:-1], widths[1:], strides):
            conv = _conv(nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=bias), use_spectral_norm)
            layers.append(nn.Sequential(conv, nn.LeakyReLU(0.2, inplace=True)))
        layers.append(nn.Sequential(_conv(nn.Conv2d(widths[-1], 1, 4, padding=1, bias=bias), use_spectral_norm)))
        self.conv1, self.conv2, self.conv3, self.conv4, self.conv5 = layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = layer(x)
            features.append(x)
        return (torch.sigmoid(x) if self.use_sigmoid else x), features


def edge_inputs(gray: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """G1's input as the official EdgeModel builds it: grey with the hole set to 1 (white), edges
    with the hole zeroed, and the mask. All ``[N, 1, H, W]`` in [0, 1], mask 1 = hole."""
    known = 1 - mask
    return torch.cat((gray * known + mask, edges * known, mask), dim=1)


def inpaint_inputs(image: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """G2's input as the official InpaintingModel builds it: RGB ``[N, 3, H, W]`` in [0, 1] with
    the hole set to 1 (white), then the composite edge map ``[N, 1, H, W]``."""
    return torch.cat((image * (1 - mask) + mask, edges), dim=1)
