"""An e4e-style encoder: aligned face -> W+ latent in one forward pass (Tov et al. 2021).

Architecture (sized for CPU training and < 50 ms inference at 64 px):

- **Backbone**: the frozen ImageNet VGG16 of :mod:`ganbrush_core.backbones` (the offline weights
  LPIPS already uses), tapped at ``relu2_2``, ``relu3_3`` and ``relu4_3`` (1/2, 1/4 and 1/8 of
  the input side). It is not stored in the encoder's weight file.
- **Feature pyramid**: 1x1 laterals to ``channels``, top-down upsampling and addition, one 3x3
  conv per level (pSp / e4e's FPN).
- **Style heads**: one strided-conv trunk per level down to 1x1, then one small MLP per W+
  layer. Coarse layers read the 1/8 level, middle layers the 1/4 level, fine layers the 1/2 level.
- **Offsets from one base** (e4e): the first head predicts ``w0``; every other layer ``i``
  predicts an offset ``delta_i`` and gets ``w_avg + w0 + delta_i``. Only the first ``active``
  offsets are used; training enables them one by one (e4e's progressive training) and
  penalises their size, which keeps the codes near W, where edits work.

Conventions: images are float32 NCHW RGB in [-1, 1] at ``config.resolution`` (the generator's);
the output is ``ws [N, num_ws, w_dim]`` in the generator's W space. A weight file is bound to
the generator it was trained for (its :func:`~stylegan_ops.checkpoints.generator_hash`):
:func:`load_encoder` refuses it for another generator.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.backbones import VGG16Features
from ganbrush_core.weights import WeightsFileError, config_from_dict, read_safetensors, save_safetensors
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator

FORMAT = "ganbrush-encoder"
VERSION = "1"
#: VGG16 activations the pyramid reads, finest first (strides 2, 4, 8).
TAPS = ("relu2_2", "relu3_3", "relu4_3")
TAP_CHANNELS = (128, 256, 512)
DEFAULT_FILE = "encoder64.safetensors"


class EncoderError(ValueError):
    """An encoder cannot be used as asked (wrong generator, unreadable file); one line."""


@dataclass
class EncoderConfig:
    """Shape of an encoder; ``coarse_end`` / ``middle_end`` split the W+ layers between the
    pyramid levels (layers ``[0, coarse_end)`` read the 1/8 level, ``[coarse_end, middle_end)``
    the 1/4 level, the rest the 1/2 level)."""

    resolution: int = 64
    num_ws: int = 10
    w_dim: int = 256
    channels: int = 128
    coarse_end: int = 4
    middle_end: int = 7

    def validate(self) -> EncoderConfig:
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            raise EncoderError(f"encoder resolution must be a power of two >= 16, got {self.resolution}")
        if not 1 <= self.coarse_end <= self.middle_end <= self.num_ws:
            raise EncoderError(f"need 1 <= coarse_end <= middle_end <= num_ws, got {self.coarse_end}, "
                               f"{self.middle_end}, {self.num_ws}")
        return self

    @classmethod
    def for_generator(cls, G: Generator, **overrides: int) -> EncoderConfig:
        return cls(resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim, **overrides).validate()


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class _Trunk(nn.Sequential):
    """Strided 3x3 convs from ``size`` x ``size`` down to 1 x 1, flattened to ``[N, channels]``."""

    def __init__(self, channels: int, size: int) -> None:
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(size))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), _act()]
        layers.append(nn.Flatten())
        super().__init__(*layers)


class _StyleHead(nn.Sequential):
    """Trunk features -> one ``w_dim`` code; the last layer starts at zero so an untrained
    encoder outputs ``w_avg`` (a face), not noise."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__(nn.Linear(channels, w_dim), _act(), nn.Linear(w_dim, w_dim))
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)


class Encoder(nn.Module):
    """Aligned faces ``[N, 3, R, R]`` in [-1, 1] -> ``ws [N, num_ws, w_dim]`` (see the module doc)."""

    def __init__(self, cfg: EncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = (cfg or EncoderConfig()).validate()
        self.backbone = VGG16Features()
        c = cfg.channels
        self.laterals = nn.ModuleList(nn.Conv2d(t, c, 1) for t in TAP_CHANNELS)
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), _act()) for _ in TAPS)
        sizes = [cfg.resolution // 2, cfg.resolution // 4, cfg.resolution // 8]
        self.trunks = nn.ModuleList(_Trunk(c, s) for s in sizes)
        self.heads = nn.ModuleList(_StyleHead(c, cfg.w_dim) for _ in range(cfg.num_ws))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        # How many layers use their own offset (1 = all layers share w0); saved with the weights.
        self.register_buffer("active", torch.tensor(cfg.num_ws, dtype=torch.int64))
        # The generator this encoder was trained for (set by load_encoder / the trainer).
        self.generator_hash = ""
        self.source = "this encoder"

    def level_of(self, layer: int) -> int:
        """Pyramid level (0 = 1/2, 1 = 1/4, 2 = 1/8) that W+ layer ``layer`` reads."""
        if layer < self.cfg.coarse_end:
            return 2
        return 1 if layer < self.cfg.middle_end else 0

    def pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The three trunk vectors ``[N, channels]`` (levels 1/2, 1/4, 1/8)."""
        r = self.cfg.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
            raise EncoderError(f"the encoder takes aligned faces [N, 3, {r}, {r}] in [-1, 1], got "
                               f"{tuple(images.shape)}")
        feats = self.backbone((images + 1) / 2, TAPS)
        laterals = [lat(feats[name]) for lat, name in zip(self.laterals, TAPS)]
        top = laterals[2]
        levels = [self.smooth[2](top)]
        for i in (1, 0):
            top = laterals[i] + F.interpolate(top, scale_factor=2.0, mode="nearest")
            levels.insert(0, self.smooth[i](top))
        return [trunk(level) for trunk, level in zip(self.trunks, levels)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vectors = self.pyramid(images)
        w0 = self.heads[0](vectors[self.level_of(0)])
        codes = [w0]
        active = int(self.active)
        for i in range(1, self.cfg.num_ws):
            if i < active:
                codes.append(w0 + self.heads[i](vectors[self.level_of(i)]))
            else:
                codes.append(w0)
        return self.w_avg + torch.stack(codes, dim=1)

    def offsets(self, ws: torch.Tensor) -> torch.Tensor:
        """``delta_i = ws[:, i] - ws[:, 0]`` for ``i >= 1``: what the offset regulariser penalises."""
        return ws[:, 1:] - ws[:, :1]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen backbone (what a weight file holds)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


# ---------------------------------------------------------------------------------------------
# Files


def default_encoder_path() -> Path:
    """The shipped encoder (trained for the shipped 64 px generator)."""
    return Path(__file__).resolve().parent / "weights" / DEFAULT_FILE


def save_encoder(E: Encoder, path: str | os.PathLike, generator: Generator | str, force: bool = False,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write ``E`` (without its backbone) as float16 safetensors bound to ``generator`` (a
    :class:`Generator` or its hash)."""
    ghash = generator if isinstance(generator, str) else generator_hash(generator)
    meta = {"generator_hash": ghash, **(metadata or {})}
    return save_safetensors(path, E.trainable_state(), format=FORMAT, version=VERSION, config=asdict(E.cfg),
                            metadata=meta, dtype=torch.float16, force=force)


def load_encoder(path: str | os.PathLike | None = None, G: Generator | None = None,
                 device: str | torch.device = "cpu") -> Encoder:
    """Read an encoder file (``None`` or ``"default"``: the shipped one). With ``G``, refuse a
    file trained for another generator (:class:`EncoderError` saying what to do)."""
    path = default_encoder_path() if path in (None, "default") else Path(path)
    if not path.is_file():
        raise EncoderError(f"{path}: no such encoder file; train one with `ganbrush train encoder`")
    try:
        wf = read_safetensors(path, FORMAT, "a ganbrush encoder")
        cfg = config_from_dict(EncoderConfig, wf.config, "encoder config").validate()
    except (WeightsFileError, ValueError, TypeError) as e:
        raise EncoderError(f"{path}: {e}") from None
    E = Encoder(cfg)
    E.generator_hash = wf.metadata.get("generator_hash", "")
    E.source = path.name
    if G is not None:
        check_encoder(E, G)
    missing = set(E.trainable_state()) - set(wf.tensors)
    unexpected = set(wf.tensors) - set(E.trainable_state())
    if missing or unexpected:
        raise EncoderError(f"{path}: encoder weights do not match its config (missing {sorted(missing)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]})")
    E.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in wf.tensors.items()}, strict=False)
    return E.to(device).eval().requires_grad_(False)


def check_encoder(E: Encoder, G: Generator) -> Encoder:
    """``E`` if it was trained for ``G`` (same :func:`generator_hash`); else :class:`EncoderError`."""
    have, want = E.generator_hash, generator_hash(G)
    if have != want:
        raise EncoderError(f"{E.source} was trained for generator {have or '(unknown)'}, not this one ({want}); "
                           f"train an encoder for it with `ganbrush train encoder --generator ...`, or use "
                           f"another inversion method (w+, w, pti)")
    return E


@torch.no_grad()
def encode(E: Encoder, images: torch.Tensor) -> torch.Tensor:
    """``ws`` for aligned faces ``[N, 3, R, R]`` (or ``[3, R, R]``) in [-1, 1], on ``E``'s device."""
    if images.ndim == 3:
        images = images[None]
    return E(images.to(E.w_avg.device, torch.float32))
