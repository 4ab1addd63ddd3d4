"""rosinality/stylegan2-pytorch checkpoints (``.pt``): ``{'g_ema': state_dict, 'latent_avg'?, 'args'?, ...}``.

The architecture is inferred from tensor shapes: mapping depth from the ``style.{i}`` layers,
resolution from the number of ``convs``, channels per resolution from the conv weights, the
resample filter from the stored blur kernel. rosinality's networks have no conv clamp.
"""

from __future__ import annotations

import argparse
import re

import torch

from ganbrush_core.safe_pickle import torch_load_tensors
from stylegan_ops.formats.common import FormatError, generator_from_state
from stylegan_ops.networks import Generator, GeneratorConfig

LATENT_AVG_SAMPLES = 10_000


def read(path: str) -> dict:
    """``torch.load`` with ``weights_only=True``, allowing exactly ``argparse.Namespace`` beside tensors;
    a refused file raises :class:`~ganbrush_core.safe_pickle.UnsafePickleError` (ganbrush's one line)."""
    return torch_load_tensors(path, [argparse.Namespace])


def is_rosinality_generator(sd: dict) -> bool:
    return "style.1.weight" in sd and "input.input" in sd and "conv1.conv.weight" in sd


def generator_state(ckpt) -> dict[str, torch.Tensor]:
    if isinstance(ckpt, dict) and isinstance(ckpt.get("g_ema"), dict):
        return ckpt["g_ema"]
    if isinstance(ckpt, dict) and is_rosinality_generator(ckpt):
        return ckpt
    keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise FormatError(f"no rosinality generator ('g_ema') found; top-level entries: {keys}")


def infer_config(sd: dict[str, torch.Tensor]) -> GeneratorConfig:
    if not is_rosinality_generator(sd):
        raise FormatError("not a rosinality StyleGAN2 generator state dict (missing style.1 / input / conv1)")
    mlp = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if mlp != list(range(1, len(mlp) + 1)):
        raise FormatError(f"mapping layers are not numbered 1..n: {mlp}")
    n_convs = len({int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv\.weight", k))})
    resolution = 4 * 2 ** (n_convs // 2)
    channels = {4: int(sd["input.input"].shape[1])}
    for j in range(n_convs // 2):
        channels[8 * 2**j] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
    blur = sd.get("convs.0.conv.blur.kernel")
    resample_filter = (blur / blur.sum()).tolist() if blur is not None else None
    return GeneratorConfig(
        img_resolution=resolution,
        z_dim=int(sd["style.1.weight"].shape[1]),
        w_dim=int(sd[f"style.{mlp[-1]}.weight"].shape[0]),
        img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
        mapping_layers=len(mlp),
        mapping_lr_mul=0.01,
        channels=channels,
        conv_clamp=None,
        **({"resample_filter": resample_filter} if resample_filter is not None else {}),
    )


def _styled_conv(src: str, dst: str, sd: dict) -> dict[str, torch.Tensor]:
    return {
        f"{dst}.conv.weight": sd[f"{src}.conv.weight"][0],
        f"{dst}.conv.affine.weight": sd[f"{src}.conv.modulation.weight"],
        f"{dst}.conv.affine.bias": sd[f"{src}.conv.modulation.bias"],
        f"{dst}.noise_strength": sd[f"{src}.noise.weight"].reshape([]),
        f"{dst}.bias": sd[f"{src}.activate.bias"],
    }


def _to_rgb(src: str, dst: str, sd: dict) -> dict[str, torch.Tensor]:
    return {
        f"{dst}.conv.weight": sd[f"{src}.conv.weight"][0],
        f"{dst}.conv.affine.weight": sd[f"{src}.conv.modulation.weight"],
        f"{dst}.conv.affine.bias": sd[f"{src}.conv.modulation.bias"],
        f"{dst}.bias": sd[f"{src}.bias"].reshape(-1),
    }


def convert_state(sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """rosinality key names -> ganbrush key names (noise buffers included, w_avg excluded)."""
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"mapping_network.layers.{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping_network.layers.{i}.bias"] = sd[f"style.{i + 1}.bias"]
    s = "synthesis_network.blocks"
    out[f"{s}.b4.const"] = sd["input.input"][0]
    out.update(_styled_conv("conv1", f"{s}.b4.conv1", sd))
    out.update(_to_rgb("to_rgb1", f"{s}.b4.torgb", sd))
    out[f"{s}.b4.conv1.noise_const"] = sd["noises.noise_0"][0, 0]
    for j, res in enumerate(sorted(cfg.channels)[1:]):
        out.update(_styled_conv(f"convs.{2 * j}", f"{s}.b{res}.conv0", sd))
        out.update(_styled_conv(f"convs.{2 * j + 1}", f"{s}.b{res}.conv1", sd))
        out.update(_to_rgb(f"to_rgbs.{j}", f"{s}.b{res}.torgb", sd))
        out[f"{s}.b{res}.conv0.noise_const"] = sd[f"noises.noise_{2 * j + 1}"][0, 0]
        out[f"{s}.b{res}.conv1.noise_const"] = sd[f"noises.noise_{2 * j + 2}"][0, 0]
    return out


@torch.no_grad()
def estimate_w_avg(G: Generator, samples: int = LATENT_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean of ``w`` over seeded samples, for checkpoints saved without ``latent_avg``."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen)
    return G.mapping_network(z).mean(dim=0)


def to_generator(ckpt) -> Generator:
    sd = generator_state(ckpt)
    cfg = infer_config(sd)
    try:
        G = generator_from_state(cfg, convert_state(sd, cfg))
    except KeyError as e:
        raise FormatError(f"rosinality generator is missing tensor {e.args[0]!r}") from None
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt, dict) else None
    if latent_avg is not None:
        G.mapping_network.w_avg.copy_(latent_avg.reshape(-1))
    else:
        G.mapping_network.w_avg.copy_(estimate_w_avg(G))
    return G.eval()
