"""SPADE networks (GauGAN, Park et al. CVPR 2019): a face drawn from its semantic label map.

- :class:`SPADE`: a parameter-free normalisation (BatchNorm by default, InstanceNorm as an
  option, :class:`NormKind`) whose per-pixel scale and shift are predicted by a small conv net
  from the one-hot label map, resized (nearest) to the feature map's size. Normalising the raw
  one-hot map would wash the labels out; modulating after the normalisation keeps them.
- :class:`SpadeResBlock`: two SPADE -> LeakyReLU(0.2) -> 3x3 conv steps (the paper's figure
  draws ReLU; its code uses LeakyReLU 0.2), a learned SPADE -> 1x1 conv shortcut when the
  channel count changes, spectral norm on the block's convs.
- :class:`SpadeGenerator`: style vector ``z`` -> linear -> ``C x 4 x 4`` -> one residual block
  per resolution 4, 8, ..., ``resolution`` (x2 nearest upsampling between them) -> 3x3 conv ->
  tanh. The block count follows the resolution (64 px: 5 blocks, 128 px: 6).
- :class:`ConcatGenerator`: the paper's central ablation (pix2pixHD-style conditioning) on the
  same trunk and widths: ordinary normalisation with learned affine, the labels concatenated to
  the input of every residual block.
- :class:`StyleEncoder`: the VAE encoder, image -> ``(mu, logvar)`` of ``z``;
  :func:`reparameterize` and :func:`kl_divergence` go with it.
- :class:`MultiscaleDiscriminator`: PatchGAN discriminators on the image concatenated with the
  one-hot map, at successive x0.5 scales, each returning logits and its intermediate features
  (for feature matching).
- :class:`Synthesizer`: generator + style encoder + :class:`SynthesizerConfig`, saved and loaded
  with :func:`save_synthesizer` / :func:`load_synthesizer` (ganbrush safetensors, format
  ``ganbrush-synthesizer``).

Conventions: images float32 ``[N, 3, H, W]`` RGB in [-1, 1]; label maps one-hot float
``[N, num_classes, H, W]`` (:func:`manipulate.labels.one_hot`) at the generator's resolution;
``z`` float ``[N, z_dim]``.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbrush_core.weights import WeightsFileError, config_from_dict, read_safetensors, save_safetensors
from manipulate.labels import NUM_CLASSES

FORMAT = "ganbrush-synthesizer"
VERSION = "1"
BASE = 4  # side of the generator's first feature map and of the encoder's last
LRELU = 0.2


class SynthesizerError(ValueError):
    """A synthesizer file or input that cannot be used; ``str()`` is one line."""


class GeneratorKind(str, enum.Enum):
    """How a generator is conditioned on the label map."""

    SPADE = "spade"  # spatially-adaptive normalisation in every block
    CONCAT = "concat"  # labels concatenated to every block's input, ordinary normalisation


class NormKind(str, enum.Enum):
    """The normalisation under SPADE (and the baseline's ordinary one)."""

    BATCH = "batch"
    INSTANCE = "instance"


def make_norm(kind: NormKind, channels: int, affine: bool) -> nn.Module:
    """BatchNorm2d (running statistics for eval mode) or InstanceNorm2d of ``channels``."""
    if NormKind(kind) is NormKind.BATCH:
        return nn.BatchNorm2d(channels, affine=affine)
    return nn.InstanceNorm2d(channels, affine=affine)


def resize_onehot(onehot: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """The one-hot map at ``size`` (nearest: a pixel keeps exactly one class)."""
    return onehot if onehot.shape[-2:] == size else F.interpolate(onehot, size=tuple(size), mode="nearest")


@dataclass
class SynthesizerConfig:
    """Shape of a synthesizer (saved in its weight file).

    ``channels`` is the trunk's width at the output resolution; each halving of the resolution
    doubles it up to ``max_channels`` (:meth:`widths`). ``spade_hidden`` is the width of SPADE's
    label-conditioning net; ``encoder_channels`` the style encoder's first width.
    """

    kind: GeneratorKind = GeneratorKind.SPADE
    resolution: int = 64
    channels: int = 32
    max_channels: int = 256
    z_dim: int = 64
    norm: NormKind = NormKind.BATCH
    spade_hidden: int = 64
    encoder_channels: int = 32
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        self.kind, self.norm = GeneratorKind(self.kind), NormKind(self.norm)
        r = self.resolution
        if r < 2 * BASE or r > 1024 or r & (r - 1):
            raise SynthesizerError(f"resolution must be a power of two from {2 * BASE} to 1024, got {r}")
        for name in ("channels", "max_channels", "z_dim", "spade_hidden", "encoder_channels", "num_classes"):
            if getattr(self, name) < 1:
                raise SynthesizerError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_blocks(self) -> int:
        """Residual blocks: one at each resolution 4, 8, ..., ``resolution``."""
        return int(math.log2(self.resolution // BASE)) + 1

    def widths(self) -> list[int]:
        """Trunk width at resolutions 4, 8, ..., ``resolution`` (coarsest first)."""
        return [min(self.max_channels, self.channels * (self.resolution // (BASE << i)))
                for i in range(self.num_blocks)]

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind.value, "norm": self.norm.value}


# ---------------------------------------------------------------------------------------------
# SPADE and the residual blocks


class SPADE(nn.Module):
    """``norm(x) * (1 + gamma(labels)) + beta(labels)`` with a parameter-free ``norm``.

    ``forward(x [N, C, h, w], onehot [N, K, H, W]) -> [N, C, h, w]``; the labels are resized
    (nearest) to ``h x w`` and read by conv3x3 -> ReLU, then one conv3x3 each for gamma and beta.
    """

    def __init__(self, channels: int, label_channels: int, hidden: int, norm: NormKind = NormKind.BATCH) -> None:
        super().__init__()
        self.norm = make_norm(norm, channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        h = self.shared(resize_onehot(onehot, x.shape[-2:]))
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SpadeResBlock(nn.Module):
    """SPADE residual block ``fin -> fout`` (middle width ``min(fin, fout)``)."""

    def __init__(self, fin: int, fout: int, cfg: SynthesizerConfig) -> None:
        super().__init__()
        mid = min(fin, fout)
        k, hidden = cfg.num_classes, cfg.spade_hidden
        self.norm_0, self.conv_0 = SPADE(fin, k, hidden, cfg.norm), spectral_norm(nn.Conv2d(fin, mid, 3, padding=1))
        self.norm_1, self.conv_1 = SPADE(mid, k, hidden, cfg.norm), spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, k, hidden, cfg.norm)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, onehot)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, onehot), LRELU))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, onehot), LRELU))
        return shortcut + dx


class ConcatResBlock(nn.Module):
    """The baseline's block: the labels (resized to the block's size) concatenated to its input
    ``x``, then the SPADE block's convs with ordinary normalisation (learned affine) in place of
    SPADE. Channels ``fin -> fout``; the learned shortcut also reads the concatenated input."""

    def __init__(self, fin: int, fout: int, cfg: SynthesizerConfig) -> None:
        super().__init__()
        mid, cin = min(fin, fout), fin + cfg.num_classes
        self.norm_0, self.conv_0 = make_norm(cfg.norm, cin, True), spectral_norm(nn.Conv2d(cin, mid, 3, padding=1))
        self.norm_1, self.conv_1 = make_norm(cfg.norm, mid, True), spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = make_norm(cfg.norm, cin, True)
            self.conv_s = spectral_norm(nn.Conv2d(cin, fout, 1, bias=False))

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        h = torch.cat((x, resize_onehot(onehot, x.shape[-2:])), dim=1)
        shortcut = self.conv_s(self.norm_s(h)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(h), LRELU))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx), LRELU))
        return shortcut + dx


# ---------------------------------------------------------------------------------------------
# Generators


class _LabelToImage(nn.Module):
    """The trunk both generators share: ``z -> C x 4 x 4 -> blocks (x2 up between) -> RGB``."""

    block_type: type[nn.Module]

    def __init__(self, cfg: SynthesizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths()
        self.fc = nn.Linear(cfg.z_dim, widths[0] * BASE * BASE)
        self.blocks = nn.ModuleList(self.block_type(fin, fout, cfg) for fin, fout in zip([widths[0]] + widths[:-1],
                                                                                          widths))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``onehot [N, num_classes, R, R]``, ``z [N, z_dim]`` -> image ``[N, 3, R, R]`` in [-1, 1]."""
        cfg = self.cfg
        want = (cfg.num_classes, cfg.resolution, cfg.resolution)
        if onehot.ndim != 4 or tuple(onehot.shape[1:]) != want:
            raise SynthesizerError(f"expected one-hot labels [N, {want[0]}, {want[1]}, {want[2]}], "
                                   f"got {list(onehot.shape)}")
        if z.shape != (onehot.shape[0], cfg.z_dim):
            raise SynthesizerError(f"expected z [{onehot.shape[0]}, {cfg.z_dim}], got {list(z.shape)}")
        x = self.fc(z).view(len(z), -1, BASE, BASE)
        for i, block in enumerate(self.blocks):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, onehot)
        return torch.tanh(self.to_rgb(F.leaky_relu(x, LRELU)))


class SpadeGenerator(_LabelToImage):
    """SPADE generator (see the module docstring); ``forward(onehot, z) -> image``."""

    block_type = SpadeResBlock


class ConcatGenerator(_LabelToImage):
    """The concatenation baseline on the SPADE generator's trunk; ``forward(onehot, z) -> image``.

    pix2pixHD feeds the label map once, at the network's input, into a conv encoder at full
    resolution. This trunk starts from ``z`` at 4 x 4, where a single concatenation would carry a
    16-pixel summary of a 64 px map (every eye and lip gone), so the labels, resized to each
    block's size, are concatenated to the input of every residual block and pass through ordinary
    normalisation with learned affine: the same information SPADE gets, without the modulation.
    """

    block_type = ConcatResBlock


GENERATORS: dict[GeneratorKind, type[_LabelToImage]] = {GeneratorKind.SPADE: SpadeGenerator,
                                                         GeneratorKind.CONCAT: ConcatGenerator}


# ---------------------------------------------------------------------------------------------
# Style encoder (VAE)


class StyleEncoder(nn.Module):
    """Image ``[N, 3, R, R]`` in [-1, 1] -> ``(mu, logvar)``, each ``[N, z_dim]``.

    Stride-2 3x3 convs (spectral norm, InstanceNorm, LeakyReLU 0.2) from ``R`` down to 4 x 4,
    widths doubling from ``encoder_channels`` up to ``8 * encoder_channels``, then two linear
    heads on the flattened 4 x 4 map.
    """

    def __init__(self, cfg: SynthesizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for i in range(cfg.num_blocks - 1):
            cout = cfg.encoder_channels * min(2 ** i, 8)
            layers += [spectral_norm(nn.Conv2d(cin, cout, 3, stride=2, padding=1)), nn.InstanceNorm2d(cout),
                       nn.LeakyReLU(LRELU)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.mu = nn.Linear(cin * BASE * BASE, cfg.z_dim)
        self.logvar = nn.Linear(cin * BASE * BASE, cfg.z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.cfg.resolution
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, r, r):
            raise SynthesizerError(f"expected images [N, 3, {r}, {r}], got {list(image.shape)}")
        h = self.convs(image).flatten(1)
        return self.mu(h), self.logvar(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample ``mu + exp(logvar / 2) * eps`` of ``z`` (``eps`` from the global torch RNG)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over ``z``'s dimensions, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)).mean()


# ---------------------------------------------------------------------------------------------
# Discriminator


class PatchDiscriminator(nn.Module):
    """One PatchGAN scale: ``x [N, in_channels, H, W]`` -> ``(logits [N, 1, h, w], features)``.

    ``layers - 1`` stride-2 4x4 convs (the first without norm), one stride-1 3x3 conv, all with
    spectral norm, InstanceNorm (not the first) and LeakyReLU 0.2, widths doubling from
    ``channels`` up to ``8 * channels``; then a 3x3 conv to one logit per patch. ``features`` are
    the outputs of every layer before the logits.
    """

    def __init__(self, in_channels: int, channels: int = 64, layers: int = 4) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"a patch discriminator needs at least 2 layers, got {layers}")
        body: list[nn.Module] = []
        cin = in_channels
        for i in range(layers):
            cout = channels * min(2 ** i, 8)
            last = i == layers - 1
            conv = nn.Conv2d(cin, cout, 3 if last else 4, stride=1 if last else 2, padding=1)
            parts = [spectral_norm(conv)] + ([nn.InstanceNorm2d(cout)] if i else []) + [nn.LeakyReLU(LRELU)]
            body.append(nn.Sequential(*parts))
            cin = cout
        self.body = nn.ModuleList(body)
        self.logits = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.body:
            x = layer(x)
            features.append(x)
        return self.logits(x), features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` :class:`PatchDiscriminator` s on ``cat(image, onehot)`` at full, 1/2, 1/4 ... size
    (3x3 average pooling, stride 2, between scales).

    ``forward(image [N, 3, H, W], onehot [N, K, H, W])`` -> one ``(logits, features)`` per scale,
    finest first.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, channels: int = 64, layers: int = 4, num_d: int = 2) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}")
        self.scales = nn.ModuleList(PatchDiscriminator(3 + num_classes, channels, layers) for _ in range(num_d))

    def forward(self, image: torch.Tensor, onehot: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        x = torch.cat((image, onehot), dim=1)
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


# ---------------------------------------------------------------------------------------------
# The shipped model


class Synthesizer(nn.Module):
    """Generator + style encoder of one :class:`SynthesizerConfig`.

    ``encode_style(image [N, 3, R, R]) -> mu [N, z_dim]`` (the style of a face);
    ``forward(onehot [N, K, R, R], z [N, z_dim]) -> image [N, 3, R, R]`` in [-1, 1].
    """

    def __init__(self, cfg: SynthesizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = GENERATORS[cfg.kind](cfg)
        self.style_encoder = StyleEncoder(cfg)

    def encode_style(self, image: torch.Tensor) -> torch.Tensor:
        return self.style_encoder(image)[0]

    def forward(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.generator(onehot, z)


def save_synthesizer(model: Synthesizer, path: str | os.PathLike, metadata: dict[str, str] | None = None,
                     dtype: torch.dtype = torch.float16, force: bool = True) -> Path:
    """Write ``model`` as ganbrush safetensors: the whole state dict (spectral norm's ``original``
    weights and its ``_u`` / ``_v`` vectors, BatchNorm running statistics) in ``dtype``, the
    config as JSON metadata."""
    return save_safetensors(path, model.state_dict(), format=FORMAT, version=VERSION, config=model.cfg.to_dict(),
                            metadata=metadata, dtype=dtype, force=force)


def load_synthesizer(path: str | os.PathLike, device: str | torch.device = "cpu") -> Synthesizer:
    """Read a :func:`save_synthesizer` file (float32, eval mode, no gradients); another kind of
    file is refused with a one-line :class:`SynthesizerError`."""
    path = Path(path)
    if not path.is_file():
        raise SynthesizerError(f"{path}: no such synthesizer file; train one with `ganbrush train spade`")
    try:
        wf = read_safetensors(path, FORMAT, "a ganbrush synthesizer")
        cfg = config_from_dict(SynthesizerConfig, wf.config, "synthesizer config")
    except (WeightsFileError, ValueError, TypeError) as e:
        raise SynthesizerError(f"{path}: {e}") from None
    model = Synthesizer(cfg)
    expected = model.state_dict()
    if set(expected) != set(wf.tensors):
        missing, unexpected = set(expected) - set(wf.tensors), set(wf.tensors) - set(expected)
        raise SynthesizerError(f"{path}: weights do not match its config (missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]})")
    wrong = [k for k, v in wf.tensors.items() if v.shape != expected[k].shape]
    if wrong:
        raise SynthesizerError(f"{path}: weights do not match its config ({wrong[0]} is "
                               f"{list(wf.tensors[wrong[0]].shape)}, expected {list(expected[wrong[0]].shape)})")
    state = {k: v.to(expected[k].dtype) for k, v in wf.tensors.items()}
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False)
