"""The discriminators a StyleGAN2 generator can train against, built and stored in one place.

- ``stylegan2``: the residual StyleGAN2 discriminator (:class:`stylegan_ops.networks.Discriminator`),
  trained with the logistic loss and lazy R1;
- ``projected``: the Projected GAN discriminator (:mod:`stylegan_ops.projected`), hinge loss, no R1.

A discriminator file is a ``.safetensors`` (format ``ganbrush-stylegan-discriminator``) holding
the state dict (float16 by default: the file is for continuing a training run, here or on a GPU,
not for inference) and, as JSON metadata, what rebuilds the network: the kind, the resolution,
and the channels (StyleGAN2) or the :class:`~stylegan_ops.projected.ProjectedConfig`. The
projected discriminator's frozen VGG16 is not in the file; it comes from the backbone cache.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

import torch
from torch import nn

from ganbrush_core.weights import WeightsFileError, read_safetensors, save_safetensors
from stylegan_ops.formats.common import DERIVED_SUFFIXES
from stylegan_ops.networks import Discriminator
from stylegan_ops.projected import ProjectedConfig, ProjectedDiscriminator

FORMAT = "ganbrush-stylegan-discriminator"
VERSION = "1"


class DiscKind(str, enum.Enum):
    """The discriminator a run trains against."""

    STYLEGAN2 = "stylegan2"
    PROJECTED = "projected"


def build_discriminator(kind: DiscKind | str, resolution: int, channels: dict[int, int] | None = None,
                        projected: ProjectedConfig | None = None) -> nn.Module:
    """A new discriminator of ``kind`` for ``resolution`` px images (``[N, 3, R, R]`` in [-1, 1])."""
    if DiscKind(kind) is DiscKind.PROJECTED:
        cfg = projected or ProjectedConfig(img_resolution=resolution)
        if cfg.img_resolution != resolution:
            raise ValueError(f"projected discriminator config is for {cfg.img_resolution} px, not {resolution} px")
        return ProjectedDiscriminator(cfg)
    return Discriminator(resolution, channels=channels)


def discriminator_kind(D: nn.Module) -> DiscKind:
    if isinstance(D, ProjectedDiscriminator):
        return DiscKind.PROJECTED
    if isinstance(D, Discriminator):
        return DiscKind.STYLEGAN2
    raise TypeError(f"not a StyleGAN discriminator: {type(D).__name__}")


def _config(D: nn.Module) -> dict:
    if isinstance(D, ProjectedDiscriminator):
        return {"kind": DiscKind.PROJECTED.value, "resolution": D.cfg.img_resolution, "projected": D.cfg.to_dict()}
    channels = {str(res): block.conv0.weight.shape[0] for res, block in
                ((int(name[1:]), block) for name, block in D.blocks.items())}
    channels["4"] = D.conv.weight.shape[0]
    return {"kind": DiscKind.STYLEGAN2.value, "resolution": D.img_resolution, "channels": channels}


def save_discriminator(D: nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = torch.float16,
                       metadata: dict[str, str] | None = None) -> Path:
    """Write ``D`` (see the module docstring); atomic, mode 0644."""
    cfg = _config(D)
    # Resampling filters are fixed buffers shared between layers: rebuilt, not stored.
    tensors = {k: v for k, v in D.state_dict().items() if not k.endswith(DERIVED_SUFFIXES)}
    return save_safetensors(path, tensors, format=FORMAT, version=VERSION, config=cfg, metadata=metadata,
                            dtype=dtype)


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Read :func:`save_discriminator`'s file: the discriminator in float32, train mode, on ``device``.
    Another kind of file, or a damaged one, raises :class:`ganbrush_core.weights.WeightsFileError`."""
    wf = read_safetensors(path, FORMAT, "a StyleGAN discriminator")
    cfg = wf.config
    try:
        kind = DiscKind(cfg["kind"])
        projected = ProjectedConfig.from_dict(cfg["projected"]) if kind is DiscKind.PROJECTED else None
        channels = {int(k): int(v) for k, v in cfg.get("channels", {}).items()} or None
        D = build_discriminator(kind, int(cfg["resolution"]), channels, projected)
        state = D.state_dict()
        differ = ({k for k in state if not k.endswith(DERIVED_SUFFIXES)} ^ wf.tensors.keys())
        if differ:
            raise KeyError(f"parameters differ from the network's: {sorted(differ)[:3]}")
        D.load_state_dict({k: v.float() for k, v in wf.tensors.items()}, strict=False)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(f"{path}: not a readable discriminator file ({first})") from None
    return D.to(device).train()
