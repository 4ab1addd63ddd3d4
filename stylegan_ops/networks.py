"""StyleGAN2 networks (config F): mapping, synthesis with skip toRGB, residual discriminator.

Conventions: images are float32 NCHW RGB in about [-1, 1]; latents ``z`` are ``[N, z_dim]``;
per-layer styles ``ws`` are ``[N, num_ws, w_dim]`` (W+). Layer ``i`` of the synthesis network
reads ``ws[:, i]``; a block's toRGB shares its index with the next block's first conv.

All weights use the equalised learning rate: parameters are stored at unit scale and
multiplied by ``1 / sqrt(fan_in)`` (times ``lr_mul``) in the forward pass.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.weights import config_from_dict
from stylegan_ops.ops import ACTIVATIONS, bias_act, downsample2d, setup_filter, upfirdn2d, upsample2d

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = ("const", "random", "none")
DEFAULT_RESAMPLE_FILTER = (1.0, 3.0, 3.0, 1.0)


def channels_for(img_resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature maps per resolution, ``min(channel_base // res, channel_max)``, as NVIDIA does."""
    return {r: min(channel_base // r, channel_max) for r in _resolutions(img_resolution)}


def _resolutions(img_resolution: int) -> list[int]:
    log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
    if img_resolution < 4 or 2**log2 != img_resolution or img_resolution > 4096:
        raise ValueError(f"img_resolution must be a power of two in 4..4096, got {img_resolution}")
    return [2**i for i in range(2, log2 + 1)]


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a :class:`Generator` (stored as JSON in checkpoints)."""

    img_resolution: int = 64
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> feature maps
    conv_clamp: float | None = None
    resample_filter: list[float] | list[list[float]] = field(default_factory=lambda: list(DEFAULT_RESAMPLE_FILTER))
    w_avg_beta: float = 0.995

    def __post_init__(self) -> None:
        resolutions = _resolutions(self.img_resolution)
        if not self.channels:
            self.channels = channels_for(self.img_resolution, 32768, 512)
        self.channels = {int(r): int(c) for r, c in self.channels.items()}
        missing = [r for r in resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels missing for resolutions {missing}")
        if self.mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {self.mapping_layers}")

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = {str(r): c for r, c in self.channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return config_from_dict(cls, d, "generator config")


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate and a fused bias + activation."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.activation = activation
        self.lr_mul = lr_mul
        self.weight_gain = lr_mul / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.matmul((self.weight * self.weight_gain).t().to(x.dtype))
        return bias_act(x, (self.bias * self.lr_mul).to(x.dtype), act=self.activation)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """``z -> w``: pixel-normalised input through ``num_layers`` lrelu FC layers (lr x0.01)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], activation="lrelu", lr_mul=lr_mul) for i in range(num_layers)
        )
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            # Running mean of w, the centre that truncation pulls towards.
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x


class ModConv(str, enum.Enum):
    """How :class:`ModulatedConv2d` computes the same result (equal up to float rounding)."""

    GROUPED = "grouped"  # each sample's weights modulated and demodulated, one grouped conv (StyleGAN2's fused path)
    BATCHED = "batched"  # input channels scaled, one shared-weight conv over the batch, output scaled by
    # the demodulation coefficients: one large GEMM instead of N small ones (see benchmarks/step.py)


def set_modconv(module: nn.Module, mode: ModConv | str) -> None:
    """Every :class:`ModulatedConv2d` inside ``module`` computes with ``mode`` from now on."""
    mode = ModConv(mode)
    for m in module.modules():
        if isinstance(m, ModulatedConv2d):
            m.mode = mode


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by an affine map of ``w``,
    optionally demodulated (weights renormalised per output channel) and 2x upsampling.

    Upsampling is a stride-2 transposed convolution followed by the resample filter, so the
    output is exactly twice the input size. ``mode`` (:class:`ModConv`, set with
    :func:`set_modconv`) picks between two equal ways of computing it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False, resample_filter: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.up = up
        self.padding = kernel_size // 2
        self.mode = ModConv.GROUPED
        if up:
            self.register_buffer("resample_filter", resample_filter)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [N, in]
        if self.mode is ModConv.BATCHED:
            x = self._batched(x, styles)
        else:
            x = self._grouped(x, styles)
        if not self.up:
            return x
        fw, k = self.resample_filter.shape[-1], self.weight.shape[-1]
        p0, p1 = (fw - k) // 2 + 1, (fw - k - 1) // 2 + 1  # trims the transposed conv to 2x size
        return upfirdn2d(x, self.resample_filter, padding=(p0, p1, p0, p1), gain=4)

    def _grouped(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        n, c, h, wid = x.shape
        weight = self.weight[None] * self.weight_gain * styles[:, None, :, None, None]  # [N, out, in, k, k]
        if self.demodulate:
            weight = weight * (weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        out_c, k = weight.shape[1], weight.shape[-1]
        x = x.reshape(1, n * c, h, wid)  # one grouped conv: a group per sample
        if self.up:
            weight = weight.transpose(1, 2).reshape(n * c, out_c, k, k)
            x = F.conv_transpose2d(x, weight, stride=2, groups=n)
        else:
            x = F.conv2d(x, weight.reshape(n * out_c, c, k, k), padding=self.padding, groups=n)
        return x.reshape(n, out_c, *x.shape[2:])

    def _batched(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)  # [out, in, k, k]
        x = x * styles[:, :, None, None].to(x.dtype)
        if self.up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # The demodulated weight of sample n is weight * styles[n] * dcoefs[n]: scaling the output
            # by dcoefs[n] is the same as convolving with it.
            dcoefs = ((weight[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
            x = x * dcoefs[:, :, None, None].to(x.dtype)
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + lrelu (x sqrt 2), optional clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: bool = False, resample_filter: torch.Tensor | None = None,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up, resample_filter=resample_filter)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const",
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise`` (``[N or 1, 1, res, res]``), when given, replaces the one ``noise_mode`` picks."""
        x = self.conv(x, w)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv (no demodulation) to image channels + bias, optional clamp."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return bias_act(self.conv(x, w), self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv,) conv, toRGB; the running image is upsampled and summed."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 resample_filter: torch.Tensor, conv_clamp: float | None) -> None:
        super().__init__()
        self.first = in_channels == 0
        self.register_buffer("resample_filter", resample_filter)
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = StyledConv(in_channels, out_channels, w_dim, resolution, up=True,
                                    resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.conv1 = StyledConv(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_ws = 2 if self.first else 3  # ws consumed: convs + toRGB (toRGB's index is shared)

    def styled_convs(self) -> list[StyledConv]:
        return [self.conv1] if self.first else [self.conv0, self.conv1]

    def forward(self, x, img, ws: torch.Tensor, noise_mode: NoiseMode,
                noises: Sequence[torch.Tensor | None] = (None, None)):
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode, noises[0])
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, noises[0])
            x = self.conv1(x, ws[:, 1], noise_mode, noises[1])
        y = self.torgb(x, ws[:, -1])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws -> image`` with a learned 4x4 constant input and skip toRGB outputs."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.img_resolution = cfg.img_resolution
        self.num_ws = cfg.num_ws
        f = setup_filter(cfg.resample_filter)
        self.resolutions = _resolutions(cfg.img_resolution)
        self.blocks = nn.ModuleDict()
        for res in self.resolutions:
            in_ch = 0 if res == 4 else cfg.channels[res // 2]
            self.blocks[f"b{res}"] = SynthesisBlock(in_ch, cfg.channels[res], cfg.w_dim, res, cfg.img_channels,
                                                    f.clone(), cfg.conv_clamp)

    def styled_convs(self) -> list[StyledConv]:
        """Every noise-carrying layer, in the order :meth:`forward` takes ``noises``."""
        return [conv for block in self.blocks.values() for conv in block.styled_convs()]

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                noises: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, w_dim], got {tuple(ws.shape)}")
        num_noises = len(self.styled_convs())
        if noises is not None and len(noises) != num_noises:
            raise ValueError(f"noises must hold {num_noises} maps (one per styled conv), got {len(noises)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks.values():
            n = len(block.styled_convs())
            block_noises = (None, None) if noises is None else noises[n_idx : n_idx + n]
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_ws], noise_mode, block_noises)
            w_idx += block.num_ws - 1
            n_idx += n
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: :meth:`mapping` (z -> ws) then :meth:`synthesis` (ws -> image)."""

    def __init__(self, cfg: GeneratorConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else GeneratorConfig(**kwargs)
        self.cfg = cfg
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        self.mapping_network = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul,
                                              cfg.w_avg_beta)
        self.synthesis_network = SynthesisNetwork(cfg)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping_network.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        """``z [N, z_dim] -> ws [N, num_ws, w_dim]``; truncation pulls the first
        ``truncation_cutoff`` (default all) layers towards ``w_avg`` by ``1 - truncation_psi``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
        w = self.mapping_network(z, update_w_avg=update_w_avg)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                  noises: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``ws [N, num_ws, w_dim] -> images [N, C, H, W]`` in about [-1, 1].

        ``noises``: explicit per-layer noise maps ``[N or 1, 1, res, res]`` in the order of
        :meth:`noise_maps` (projectors optimise them); they override ``noise_mode``."""
        return self.synthesis_network(ws, noise_mode, noises)

    def noise_maps(self) -> list[torch.Tensor]:
        """The constant noise of every styled conv as ``[1, 1, res, res]`` copies (coarse to fine)."""
        return [conv.noise_const.detach().clone()[None, None] for conv in self.synthesis_network.styled_convs()]

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: NoiseMode = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)


@torch.no_grad()
def sample_w(G: Generator, num: int, seed: int = 0, batch: int = 2000) -> torch.Tensor:
    """``num`` seeded, untruncated samples of the mapping network's ``w`` (``[num, w_dim]`` float32).
    ``z`` is drawn on the CPU, so the samples are the same on every device."""
    z = torch.randn(num, G.z_dim, generator=torch.Generator(device="cpu").manual_seed(seed)).to(G.w_avg.device)
    return torch.cat([G.mapping(chunk)[:, 0] for chunk in z.split(batch)]).float()


# --------------------------------------------------------------------------------------------
# Discriminator


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate, fused bias + activation, optional 2x downsampling
    (resample filter first, then a stride-2 conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: bool = False, resample_filter: torch.Tensor | None = None,
                 gain: float = 1.0, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.gain, self.conv_clamp = activation, gain, conv_clamp
        self.down = down
        self.padding = kernel_size // 2
        if down:
            self.register_buffer("resample_filter", resample_filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down and w.shape[-1] == 1:
            # A 1x1 conv commutes with the filter: downsample first, convolve the smaller image.
            x = F.conv2d(downsample2d(x, self.resample_filter), w)
        elif self.down:
            fw = self.resample_filter.shape[-1]
            p0, p1 = self.padding + (fw - 1) // 2, self.padding + (fw - 2) // 2
            x = F.conv2d(upfirdn2d(x, self.resample_filter, padding=(p0, p1, p0, p1)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        b = None if self.bias is None else self.bias.to(x.dtype)
        clamp = None if self.conv_clamp is None else self.conv_clamp * self.gain
        gain = ACTIVATIONS[self.activation].default_gain * self.gain
        return bias_act(x, b, act=self.activation, gain=gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip,
    summed with gain sqrt(1/2) each so the variance is kept."""

    def __init__(self, in_channels: int, out_channels: int, resample_filter: torch.Tensor,
                 from_rgb: int = 0, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.fromrgb = (EqualConv2d(from_rgb, in_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
                        if from_rgb else None)
        self.register_buffer("resample_filter", resample_filter)
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=True,
                                 resample_filter=resample_filter, gain=math.sqrt(0.5), conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True,
                                resample_filter=resample_filter, gain=math.sqrt(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        return self.skip(x) + self.conv1(self.conv0(x))


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation of features as extra channels, so the
    discriminator can see a lack of variety across samples."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"batch size {n} must be divisible by the mbstd group size {g}")
    y = x.reshape(g, n // g, num_channels, c // num_channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # std over the group
    y = y.mean(dim=[2, 3, 4]).reshape(n // g, num_channels, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image ``[N, C, H, W]`` in [-1, 1] -> logits ``[N, 1]``."""

    def __init__(self, img_resolution: int = 64, img_channels: int = 3, channels: dict[int, int] | None = None,
                 mbstd_group_size: int = 4, conv_clamp: float | None = None,
                 resample_filter=DEFAULT_RESAMPLE_FILTER) -> None:
        super().__init__()
        resolutions = _resolutions(img_resolution)
        channels = {int(k): v for k, v in (channels or channels_for(img_resolution, 32768, 512)).items()}
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mbstd_group_size = mbstd_group_size
        f = setup_filter(resample_filter)
        self.blocks = nn.ModuleDict()
        for res in reversed(resolutions[1:]):
            self.blocks[f"b{res}"] = DiscriminatorBlock(
                channels[res], channels[res // 2], f.clone(),
                from_rgb=img_channels if res == img_resolution else 0, conv_clamp=conv_clamp)
        c4 = channels[4]
        self.fromrgb4 = (EqualConv2d(img_channels, c4, 1, activation="lrelu", conv_clamp=conv_clamp)
                         if img_resolution == 4 else None)
        self.conv = EqualConv2d(c4 + 1, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(
                f"expected images [N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}], "
                f"got {tuple(img.shape)}")
        x = img.to(torch.float32)
        if self.fromrgb4 is not None:
            x = self.fromrgb4(x)
        for block in self.blocks.values():
            x = block(x)
        x = minibatch_stddev(x, self.mbstd_group_size)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)
