"""Independent test oracle for the two official StyleGAN2 checkpoint formats.

Nothing here imports ganbrush: the writers lay files out the way the official code does and the
oracles re-implement the official forward passes with plain ``torch.nn.functional`` ops, so a
loader can be checked against numbers that never went through it.

* rosinality/stylegan2-pytorch ``.pt`` (``train.py`` checkpoints and ``convert_weight.py``
  outputs): :func:`make_rosinality_checkpoint`, :func:`rosinality_forward`.
* NVIDIA stylegan2-ada-pytorch ``network-snapshot-*.pkl``: :func:`make_nvidia_pickle`,
  :func:`nvidia_forward`, plus two hostile pickles (:func:`make_malicious_pickle`,
  :func:`make_code_exec_pickle`).

Tensor conventions: z ``[N, z_dim]``; ws ``[N, num_ws, w_dim]``; images float32 NCHW
``[N, 3, R, R]`` (official scale, nominally [-1, 1], not clamped). Everything runs in float32 on
the CPU. Values are random but deliberately "non-default": every bias and noise strength is
non-zero so a dropped term shows up as a large output difference.

Format facts a loader needs (checked against the two code bases):

* rosinality: mapping ``style.{1..n_mlp}`` stores ``randn / lr_mul`` (use ``w * 0.01/sqrt(in)``,
  ``b * 0.01``); conv weights ``[1, O, I, k, k]``; ``noises.noise_{i}`` ``[1, 1, r, r]`` with
  ``r = 2 ** ((i + 5) // 2)`` in layer order conv1, convs.0, convs.1, ...; upsampling layers are
  a stride-2 ``conv_transpose2d`` with the *unflipped* weight then a [1,3,3,1] blur (kernel stored
  x4, pad 1/1); latent index: conv1 0, to_rgb1 1, then per resolution j: 2j+1, 2j+2, 2j+3.
* NVIDIA: ``network-snapshot`` pickles hold ``torch_utils.persistence._reconstruct_persistent_obj
  (meta)`` records, ``meta = dict(type='class', version=6, module_src=<source text>,
  class_name=..., state=<nn.Module.__dict__ + _init_args/_init_kwargs>)``; constructor kwargs
  (``conv_clamp``, ``num_fp16_res``, mapping ``num_layers``) live in ``_init_kwargs``, with
  ``dnnlib.util.EasyDict`` values. The same numbers map 1:1 onto rosinality's (no flips).
"""

from __future__ import annotations

import argparse
import collections
import copy
import copyreg
import io
import math
import os
import pickle
import pickletools
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

SQRT2 = math.sqrt(2.0)
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)

# ----------------------------------------------------------------------------------------------
# Shared resampling math (both repos use the same upfirdn2d definition).


def fir_2d(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> Tensor:
    """Outer product of ``taps`` normalised to sum 1, times ``gain``: ``[K, K]`` float32."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum() * gain


def upfirdn2d(
    x: Tensor, f: Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Zero-insertion upsample, pad/crop ``(x0, x1, y0, y1)``, FIR *convolution*, decimate.

    ``x``: ``[N, C, H, W]``; ``f``: ``[kh, kw]``. Same semantics as the official ``upfirdn2d``.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down]


def _grouped_modconv(x: Tensor, wt: Tensor, *, transpose: bool, padding: int) -> Tensor:
    """Per-sample conv: ``x`` ``[N, I, H, W]``, ``wt`` ``[N, O, I, k, k]`` -> ``[N, O, H', W']``.

    ``transpose`` = stride-2 transposed conv with the weight used as-is (no flip), which is what
    both repos do for their upsampling layers.
    """
    n, i, h, w = x.shape
    o, k = wt.shape[1], wt.shape[-1]
    xg = x.reshape(1, n * i, h, w)
    if transpose:
        wg = wt.transpose(1, 2).reshape(n * i, o, k, k)
        y = F.conv_transpose2d(xg, wg, stride=2, padding=0, groups=n)
    else:
        y = F.conv2d(xg, wt.reshape(n * o, i, k, k), padding=padding, groups=n)
    return y.reshape(n, o, y.shape[-2], y.shape[-1])


# ----------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch


def rosinality_channel_table(channel_multiplier: int = 2) -> dict[int, int]:
    """``Generator.channels`` of rosinality's model.py."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
            512: 32 * cm, 1024: 16 * cm}


def _resolve_channels(
    size: int, channels: Mapping[int, int] | int | None, channel_multiplier: int, channels_max: int | None,
) -> dict[int, int]:
    resolutions = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
    if channels is None:
        table = rosinality_channel_table(channel_multiplier)
        out = {r: table[r] for r in resolutions}
    elif isinstance(channels, int):
        out = {r: channels for r in resolutions}
    else:
        out = {r: int(channels[r]) for r in resolutions}
    if channels_max is not None:
        out = {r: min(c, channels_max) for r, c in out.items()}
    return out


def _ros_generator_sd(
    gen: torch.Generator, size: int, style_dim: int, n_mlp: int, ch: Mapping[int, int], lr_mlp: float,
) -> collections.OrderedDict[str, Tensor]:
    """Random rosinality ``Generator.state_dict()`` with the exact keys, shapes and key order."""

    def randn(*shape: int, scale: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=gen) * scale

    log_size = int(math.log2(size))
    sd: collections.OrderedDict[str, Tensor] = collections.OrderedDict()
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm (no tensors)
        sd[f"style.{i}.weight"] = randn(style_dim, style_dim) / lr_mlp  # EqualLinear stores randn / lr_mul
        sd[f"style.{i}.bias"] = randn(style_dim, scale=10.0)  # used as bias * lr_mul -> ~0.1

    def styled_conv(prefix: str, cin: int, cout: int, upsample: bool) -> None:
        sd[f"{prefix}.conv.weight"] = randn(1, cout, cin, 3, 3)
        if upsample:
            sd[f"{prefix}.conv.blur.kernel"] = fir_2d(BLUR_TAPS, gain=4.0)  # make_kernel * factor**2
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1.0 + randn(cin, scale=0.1)  # bias_init=1
        sd[f"{prefix}.noise.weight"] = randn(1, scale=0.1)
        sd[f"{prefix}.activate.bias"] = randn(cout, scale=0.1)

    def to_rgb(prefix: str, cin: int, upsample: bool) -> None:
        sd[f"{prefix}.bias"] = randn(1, 3, 1, 1, scale=0.1)
        if upsample:
            sd[f"{prefix}.upsample.kernel"] = fir_2d(BLUR_TAPS, gain=4.0)
        sd[f"{prefix}.conv.weight"] = randn(1, 3, cin, 1, 1, scale=0.3)
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1.0 + randn(cin, scale=0.1)

    sd["input.input"] = randn(1, ch[4], 4, 4)
    styled_conv("conv1", ch[4], ch[4], upsample=False)
    to_rgb("to_rgb1", ch[4], upsample=False)
    convs: list[tuple[str, int, int, bool]] = []
    cin = ch[4]
    for i in range(3, log_size + 1):
        cout = ch[2 ** i]
        convs += [(f"convs.{len(convs)}", cin, cout, True), (f"convs.{len(convs) + 1}", cout, cout, False)]
        cin = cout
    for prefix, a, b, up in convs:
        styled_conv(prefix, a, b, up)
    for i in range(3, log_size + 1):
        to_rgb(f"to_rgbs.{i - 3}", ch[2 ** i], upsample=True)
    num_layers = (log_size - 2) * 2 + 1
    for layer_idx in range(num_layers):
        res = 2 ** ((layer_idx + 5) // 2)
        sd[f"noises.noise_{layer_idx}"] = randn(1, 1, res, res)
    return sd


def _ros_discriminator_sd(
    gen: torch.Generator, size: int, ch: Mapping[int, int],
) -> collections.OrderedDict[str, Tensor]:
    """Random rosinality ``Discriminator.state_dict()`` (exact keys/shapes; values only plausible)."""
    sd: collections.OrderedDict[str, Tensor] = collections.OrderedDict()
    down_k = fir_2d(BLUR_TAPS)  # Blur without upsample factor
    sd["convs.0.0.weight"] = torch.randn(ch[size], 3, 1, 1, generator=gen)
    sd["convs.0.1.bias"] = torch.randn(ch[size], generator=gen) * 0.1
    cin = ch[size]
    log_size = int(math.log2(size))
    for j, i in enumerate(range(log_size, 2, -1), start=1):
        cout = ch[2 ** (i - 1)]
        p = f"convs.{j}"
        sd[f"{p}.conv1.0.weight"] = torch.randn(cin, cin, 3, 3, generator=gen)
        sd[f"{p}.conv1.1.bias"] = torch.randn(cin, generator=gen) * 0.1
        sd[f"{p}.conv2.0.kernel"] = down_k.clone()
        sd[f"{p}.conv2.1.weight"] = torch.randn(cout, cin, 3, 3, generator=gen)
        sd[f"{p}.conv2.2.bias"] = torch.randn(cout, generator=gen) * 0.1
        sd[f"{p}.skip.0.kernel"] = down_k.clone()
        sd[f"{p}.skip.1.weight"] = torch.randn(cout, cin, 1, 1, generator=gen)
        cin = cout
    sd["final_conv.0.weight"] = torch.randn(ch[4], cin + 1, 3, 3, generator=gen)
    sd["final_conv.1.bias"] = torch.randn(ch[4], generator=gen) * 0.1
    sd["final_linear.0.weight"] = torch.randn(ch[4], ch[4] * 16, generator=gen)
    sd["final_linear.0.bias"] = torch.randn(ch[4], generator=gen) * 0.1
    sd["final_linear.1.weight"] = torch.randn(1, ch[4], generator=gen)
    sd["final_linear.1.bias"] = torch.randn(1, generator=gen) * 0.1
    return sd


def _adam_state(sd: Mapping[str, Tensor], param_names: Sequence[str], lr: float, betas: tuple[float, float]) -> dict:
    """A real ``torch.optim.Adam.state_dict()`` after one step over the given parameters."""
    params = [torch.nn.Parameter(sd[n].clone()) for n in param_names]
    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    return opt.state_dict()


def _ros_args(size: int, style_dim: int, n_mlp: int, channel_multiplier: int) -> argparse.Namespace:
    """The ``args`` Namespace rosinality's train.py stores (parser defaults + fields set in main)."""
    return argparse.Namespace(
        path="lmdb/ffhq", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=size, r1=10.0,
        path_regularize=2.0, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9, ckpt=None,
        lr=0.002, channel_multiplier=channel_multiplier, wandb=False, local_rank=0, augment=False,
        augment_p=0.0, ada_target=0.6, ada_length=500000, ada_every=256, distributed=False,
        latent=style_dim, n_mlp=n_mlp, start_iter=0,
    )


def make_rosinality_checkpoint(
    path: str | os.PathLike,
    size: int = 32,
    style_dim: int = 64,
    n_mlp: int = 3,
    channel_multiplier: int = 1,
    channels_max: int | None = None,
    seed: int = 0,
    with_args: bool = True,
    with_latent_avg: bool = True,
    *,
    channels: Mapping[int, int] | int | None = 32,
    kind: Literal["train", "convert"] = "train",
    legacy_format: bool = False,
) -> dict:
    """Write a rosinality checkpoint with ``torch.save`` and return the dict that was saved.

    ``kind="train"``: what train.py saves every 10k iterations: ``g``, ``d``, ``g_ema``,
    ``g_optim``, ``d_optim`` and (``with_args``, newer train.py) ``args`` (argparse.Namespace) and
    ``ada_aug_p`` (float). ``kind="convert"``: what convert_weight.py saves: ``g_ema`` (+
    ``latent_avg``). ``latent_avg`` (``[style_dim]``, the mean mapped w) is added when
    ``with_latent_avg``. ``g`` holds different values from ``g_ema`` (a loader must pick
    ``g_ema``).

    ``channels``: per-resolution channel count (dict res -> C) or one int for all resolutions
    (default 32: small files); ``None`` = rosinality's own table for ``channel_multiplier``.
    ``channels_max`` caps either. ``legacy_format`` writes the pre-1.6 (non-zip) torch format.
    """
    gen = torch.Generator().manual_seed(seed)
    ch = _resolve_channels(size, channels, channel_multiplier, channels_max)
    g_ema = _ros_generator_sd(gen, size, style_dim, n_mlp, ch, lr_mlp=0.01)
    ckpt: dict[str, Any] = {}
    if kind == "train":
        g = collections.OrderedDict(
            (k, v if k.endswith("kernel") else v + 0.05 * torch.randn(v.shape, generator=gen)) for k, v in g_ema.items()
        )
        d = _ros_discriminator_sd(gen, size, ch)
        g_params = [k for k in g if not (k.endswith(".kernel") or k.startswith("noises."))]
        d_params = [k for k in d if not k.endswith(".kernel")]
        g_ratio, d_ratio = 4 / 5, 16 / 17
        ckpt["g"] = g
        ckpt["d"] = d
        ckpt["g_ema"] = g_ema
        ckpt["g_optim"] = _adam_state(g, g_params, 0.002 * g_ratio, (0.0, 0.99 ** g_ratio))
        ckpt["d_optim"] = _adam_state(d, d_params, 0.002 * d_ratio, (0.0, 0.99 ** d_ratio))
        if with_args:
            ckpt["args"] = _ros_args(size, style_dim, n_mlp, channel_multiplier)
            ckpt["ada_aug_p"] = 0.0
    elif kind == "convert":
        ckpt["g_ema"] = g_ema
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if with_latent_avg:
        z = torch.randn(4096, style_dim, generator=gen)
        with torch.no_grad():
            ckpt["latent_avg"] = rosinality_mapping(g_ema, z).mean(0)
    torch.save(ckpt, os.fspath(path), _use_new_zipfile_serialization=not legacy_format)
    return ckpt


def rosinality_config(g_sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Architecture of a rosinality generator state dict, read from key names and shapes."""
    n_mlp = sum(1 for k in g_sd if k.startswith("style.") and k.endswith(".weight"))
    n_rgbs = sum(1 for k in g_sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    log_size = n_rgbs + 2
    channels = {4: int(g_sd["input.input"].shape[1])}
    for i in range(n_rgbs):
        channels[2 ** (i + 3)] = int(g_sd[f"convs.{2 * i}.conv.weight"].shape[1])
    return dict(
        size=2 ** log_size, log_size=log_size, style_dim=int(g_sd["style.1.weight"].shape[1]), n_mlp=n_mlp,
        channels=channels, num_layers=(log_size - 2) * 2 + 1, n_latent=log_size * 2 - 2,
    )


def _ros_equal_linear(x: Tensor, w: Tensor, b: Tensor, lr_mul: float, fused_lrelu: bool) -> Tensor:
    y = F.linear(x, w * (lr_mul / math.sqrt(w.shape[1])))
    y = y + b * lr_mul
    return F.leaky_relu(y, 0.2) * SQRT2 if fused_lrelu else y


def rosinality_mapping(g_sd: Mapping[str, Tensor], z: Tensor, lr_mlp: float = 0.01) -> Tensor:
    """``Generator.style``: PixelNorm then n_mlp x EqualLinear(lr_mul=0.01, fused_lrelu). ``[N, D]``."""
    x = z.float()
    x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in g_sd:
        x = _ros_equal_linear(x, g_sd[f"style.{i}.weight"], g_sd[f"style.{i}.bias"], lr_mlp, True)
        i += 1
    return x


def _ros_modconv(
    g_sd: Mapping[str, Tensor], prefix: str, x: Tensor, w: Tensor, *, demodulate: bool, upsample: bool,
) -> Tensor:
    """rosinality ``ModulatedConv2d`` (fused path): weight ``[1, O, I, k, k]`` * 1/sqrt(I k k)."""
    weight = g_sd[f"{prefix}.weight"]
    _, o, i, k, _ = weight.shape
    style = _ros_equal_linear(w, g_sd[f"{prefix}.modulation.weight"], g_sd[f"{prefix}.modulation.bias"], 1.0, False)
    wt = weight * (1.0 / math.sqrt(i * k * k)) * style[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        wt = wt * torch.rsqrt(wt.square().sum(dim=[2, 3, 4]) + 1e-8)[:, :, None, None, None]
    if not upsample:
        return _grouped_modconv(x, wt, transpose=False, padding=k // 2)
    y = _grouped_modconv(x, wt, transpose=True, padding=0)
    blur = g_sd[f"{prefix}.blur.kernel"]  # already scaled by factor**2
    p = (blur.shape[0] - 2) - (k - 1)
    pad0, pad1 = (p + 1) // 2 + 1, p // 2 + 1
    return upfirdn2d(y, blur, pad=(pad0, pad1, pad0, pad1))


def _ros_styled_conv(g_sd: Mapping[str, Tensor], prefix: str, x: Tensor, w: Tensor, noise: Tensor, up: bool) -> Tensor:
    y = _ros_modconv(g_sd, f"{prefix}.conv", x, w, demodulate=True, upsample=up)
    y = y + g_sd[f"{prefix}.noise.weight"] * noise
    return F.leaky_relu(y + g_sd[f"{prefix}.activate.bias"][None, :, None, None], 0.2) * SQRT2


def _ros_to_rgb(g_sd: Mapping[str, Tensor], prefix: str, x: Tensor, w: Tensor, skip: Tensor | None) -> Tensor:
    y = _ros_modconv(g_sd, f"{prefix}.conv", x, w, demodulate=False, upsample=False) + g_sd[f"{prefix}.bias"]
    if skip is not None:
        kern = g_sd[f"{prefix}.upsample.kernel"]  # already scaled by factor**2
        p = kern.shape[0] - 2
        pad0, pad1 = (p + 1) // 2 + 1, p // 2
        y = y + upfirdn2d(skip, kern, up=2, pad=(pad0, pad1, pad0, pad1))
    return y


@torch.no_grad()
def rosinality_forward(
    g_sd: Mapping[str, Tensor],
    styles_or_ws: Tensor,
    *,
    input_is_latent: bool,
    truncation: float = 1.0,
    truncation_latent: Tensor | None = None,
    noise: Sequence[Tensor] | None = None,
) -> Tensor:
    """rosinality ``Generator.forward([x], randomize_noise=False, ...)[0]`` on a raw state dict.

    ``styles_or_ws``: z ``[N, style_dim]`` (``input_is_latent=False``) or w ``[N, style_dim]`` /
    ws ``[N, n_latent, style_dim]`` (``input_is_latent=True``). Truncation is applied, as in the
    official code, only when ``truncation < 1``: ``tl + truncation * (w - tl)`` on every layer.
    ``noise``: optional list of ``num_layers`` tensors ``[1 or N, 1, r, r]`` replacing the
    ``noises.noise_{i}`` buffers (layer i has resolution ``2 ** ((i + 5) // 2)``).
    Returns ``[N, 3, size, size]`` float32.
    """
    cfg = rosinality_config(g_sd)
    x = styles_or_ws.float()
    w = x if input_is_latent else rosinality_mapping(g_sd, x)
    if truncation < 1:
        if truncation_latent is None:
            raise ValueError("truncation < 1 needs truncation_latent")
        w = truncation_latent + truncation * (w - truncation_latent)
    ws = w if w.ndim == 3 else w[:, None, :].repeat(1, cfg["n_latent"], 1)
    if ws.shape[1] != cfg["n_latent"]:
        raise ValueError(f"expected {cfg['n_latent']} latents, got {ws.shape[1]}")
    noises = list(noise) if noise is not None else [g_sd[f"noises.noise_{i}"] for i in range(cfg["num_layers"])]
    n = ws.shape[0]
    out = g_sd["input.input"].repeat(n, 1, 1, 1)
    out = _ros_styled_conv(g_sd, "conv1", out, ws[:, 0], noises[0], up=False)
    skip = _ros_to_rgb(g_sd, "to_rgb1", out, ws[:, 1], None)
    li = 1
    for j in range(cfg["log_size"] - 2):
        out = _ros_styled_conv(g_sd, f"convs.{2 * j}", out, ws[:, li], noises[2 * j + 1], up=True)
        out = _ros_styled_conv(g_sd, f"convs.{2 * j + 1}", out, ws[:, li + 1], noises[2 * j + 2], up=False)
        skip = _ros_to_rgb(g_sd, f"to_rgbs.{j}", out, ws[:, li + 2], skip)
        li += 2
    return skip


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch: pickle writer


PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in stylegan2-ada-pytorch
NETWORKS_MODULE_SRC = '''# Stand-in for the source text of training/networks.py that stylegan2-ada-pytorch
# embeds in every persistent object. A loader must never compile or run it.
import torch

class FullyConnectedLayer(torch.nn.Module): pass
class Conv2dLayer(torch.nn.Module): pass
class MappingNetwork(torch.nn.Module): pass
class SynthesisLayer(torch.nn.Module): pass
class ToRGBLayer(torch.nn.Module): pass
class SynthesisBlock(torch.nn.Module): pass
class SynthesisNetwork(torch.nn.Module): pass
class Generator(torch.nn.Module): pass
class DiscriminatorBlock(torch.nn.Module): pass
class MinibatchStdLayer(torch.nn.Module): pass
class DiscriminatorEpilogue(torch.nn.Module): pass
class Discriminator(torch.nn.Module): pass
'''
AUGMENT_MODULE_SRC = '''# Stand-in for the source text of training/augment.py (never to be run).
import torch

class AugmentPipe(torch.nn.Module): pass
'''

# nn.Module.__dict__ bookkeeping entries, in order, as written by torch 1.7 (the version the
# official pickles were made with) and by the torch in this venv.
_TORCH17_MODULE_KEYS = (
    "_parameters", "_buffers", "_non_persistent_buffers_set", "_backward_hooks", "_forward_hooks",
    "_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks", "_modules",
)


def _module_dict_skeleton(style: Literal["torch17", "current"]) -> dict[str, Any]:
    if style == "torch17":
        keys = _TORCH17_MODULE_KEYS
    else:
        keys = tuple(k for k in torch.nn.Module().__dict__ if k != "training")
    d: dict[str, Any] = {"training": False}  # snapshots are .eval()
    for k in keys:
        if k == "_non_persistent_buffers_set":
            d[k] = set()
        elif k == "_is_full_backward_hook":
            d[k] = None
        else:
            d[k] = collections.OrderedDict()
    return d


class _Node:
    """One persistent network object while it is being built (the official module tree)."""

    def __init__(self, class_name: str, init_args: tuple, init_kwargs: dict, module_src: str) -> None:
        self.class_name = class_name
        self.init_args = init_args
        self.init_kwargs = init_kwargs
        self.module_src = module_src
        self.items: list[tuple[str, str, Any]] = []  # (kind, name, value), kind in attr/param/buffer/module

    def attr(self, name: str, value: Any) -> _Node:
        self.items.append(("attr", name, value))
        return self

    def param(self, name: str, value: Tensor) -> _Node:
        self.items.append(("param", name, value))
        return self

    def buffer(self, name: str, value: Tensor) -> _Node:
        self.items.append(("buffer", name, value))
        return self

    def module(self, name: str, value: _Node) -> _Node:
        self.items.append(("module", name, value))
        return self

    def state_dict(self, prefix: str = "") -> collections.OrderedDict[str, Tensor]:
        """Flat ``nn.Module.state_dict()`` order: own params, own buffers, then children."""
        out: collections.OrderedDict[str, Tensor] = collections.OrderedDict()
        for kind in ("param", "buffer"):
            for k, name, v in self.items:
                if k == kind:
                    out[prefix + name] = v
        for k, name, v in self.items:
            if k == "module":
                out.update(v.state_dict(prefix + name + "."))
        return out


def _fc(gen: torch.Generator, src: str, fin: int, fout: int, *, activation: str = "linear", lr: float | int = 1,
        bias_init: float | int = 0, weight: Tensor | None = None, bias: Tensor | None = None,
        init_kwargs: dict | None = None) -> _Node:
    """``FullyConnectedLayer``: weight ``[out, in]`` (stored randn / lr), bias ``[out]``."""
    node = _Node("FullyConnectedLayer", (fin, fout), init_kwargs if init_kwargs is not None else {}, src)
    node.attr("activation", activation)
    if weight is None:
        weight = torch.randn(fout, fin, generator=gen) / lr
    if bias is None:
        bias = bias_init + torch.randn(fout, generator=gen) * (0.1 / lr)
    node.param("weight", weight).param("bias", bias)
    node.attr("weight_gain", np.float64(lr / np.sqrt(fin)))
    node.attr("bias_gain", lr)
    return node


def _synthesis_layer(gen: torch.Generator, src: str, cin: int, cout: int, w_dim: int, res: int, up: int,
                     conv_clamp: float | None, layer_kwargs: Mapping[str, Any]) -> _Node:
    kw: dict[str, Any] = dict(w_dim=w_dim, resolution=res)
    if up == 2:
        kw.update(up=2, resample_filter=[1, 3, 3, 1])
    kw.update(conv_clamp=conv_clamp, channels_last=False, **layer_kwargs)
    node = _Node("SynthesisLayer", (cin, cout), kw, src)
    node.attr("resolution", res).attr("up", up).attr("use_noise", True).attr("activation", "lrelu")
    node.attr("conv_clamp", conv_clamp)
    node.buffer("resample_filter", fir_2d(BLUR_TAPS))
    node.attr("padding", 1).attr("act_gain", np.float64(np.sqrt(2)))
    node.module("affine", _fc(gen, src, w_dim, cin, bias_init=1, init_kwargs=dict(bias_init=1)))
    node.param("weight", torch.randn(cout, cin, 3, 3, generator=gen))
    node.buffer("noise_const", torch.randn(res, res, generator=gen))
    node.param("noise_strength", torch.randn([], generator=gen) * 0.1)
    node.param("bias", torch.randn(cout, generator=gen) * 0.1)
    return node


def _torgb_layer(gen: torch.Generator, src: str, cin: int, w_dim: int, conv_clamp: float | None) -> _Node:
    node = _Node("ToRGBLayer", (cin, 3), dict(w_dim=w_dim, conv_clamp=conv_clamp, channels_last=False), src)
    node.attr("conv_clamp", conv_clamp)
    node.module("affine", _fc(gen, src, w_dim, cin, bias_init=1, init_kwargs=dict(bias_init=1)))
    node.param("weight", torch.randn(3, cin, 1, 1, generator=gen) * 0.3)
    node.param("bias", torch.randn(3, generator=gen) * 0.1)
    node.attr("weight_gain", np.float64(1 / np.sqrt(cin * 1)))
    return node


def _nv_channels(img_resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(img_resolution)) + 1)}


def _nv_generator(gen: torch.Generator, src: str, easydict: type, *, z_dim: int, c_dim: int, w_dim: int,
                  img_resolution: int, mapping_layers: int, channel_base: int, channel_max: int,
                  conv_clamp: float | None, num_fp16_res: int, legacy_kwargs: bool = False) -> _Node:
    """The official ``Generator`` tree (skip architecture), random values.

    ``legacy_kwargs``: constructor kwargs as legacy.py writes them for converted TF networks
    (every mapping/synthesis option spelled out) instead of train.py's minimal set.
    """
    if legacy_kwargs:
        mapping_kwargs = easydict(num_layers=mapping_layers, embed_features=None, layer_features=None,
                                  activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995)
        synthesis_kwargs = easydict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                                    conv_clamp=conv_clamp, architecture="skip", resample_filter=[1, 3, 3, 1],
                                    use_noise=True, activation="lrelu")
        g_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=3,
                        mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
        block_extra: dict[str, Any] = dict(architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                                           activation="lrelu")
        layer_extra: dict[str, Any] = dict(use_noise=True, activation="lrelu")
    else:
        mapping_kwargs = easydict(num_layers=mapping_layers)
        synthesis_kwargs = easydict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                                    conv_clamp=conv_clamp)
        g_kwargs = dict(z_dim=z_dim, w_dim=w_dim, mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs,
                        c_dim=c_dim, img_resolution=img_resolution, img_channels=3)
        block_extra, layer_extra = {}, {}
    g = _Node("Generator", (), g_kwargs, src)
    g.attr("z_dim", z_dim).attr("c_dim", c_dim).attr("w_dim", w_dim).attr("img_resolution", img_resolution)
    g.attr("img_channels", 3)

    log2 = int(math.log2(img_resolution))
    resolutions = [2 ** i for i in range(2, log2 + 1)]
    ch = _nv_channels(img_resolution, channel_base, channel_max)
    fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
    syn = _Node("SynthesisNetwork", (), dict(w_dim=w_dim, img_resolution=img_resolution, img_channels=3,
                                             **synthesis_kwargs), src)
    syn.attr("w_dim", w_dim).attr("img_resolution", img_resolution).attr("img_resolution_log2", log2)
    syn.attr("img_channels", 3).attr("block_resolutions", list(resolutions))
    num_ws = 0
    blocks = []
    for res in resolutions:
        cin = ch[res // 2] if res > 4 else 0
        cout = ch[res]
        use_fp16 = res >= fp16_resolution
        is_last = res == img_resolution
        b = _Node("SynthesisBlock", (cin, cout), dict(w_dim=w_dim, resolution=res, img_channels=3, is_last=is_last,
                                                       use_fp16=use_fp16, conv_clamp=conv_clamp, **block_extra), src)
        b.attr("in_channels", cin).attr("w_dim", w_dim).attr("resolution", res).attr("img_channels", 3)
        b.attr("is_last", is_last).attr("architecture", "skip").attr("use_fp16", use_fp16)
        b.attr("channels_last", False)
        b.buffer("resample_filter", fir_2d(BLUR_TAPS))
        num_conv = 1 if cin == 0 else 2
        b.attr("num_conv", num_conv).attr("num_torgb", 1)
        if cin == 0:
            b.param("const", torch.randn(cout, res, res, generator=gen))
        else:
            b.module("conv0", _synthesis_layer(gen, src, cin, cout, w_dim, res, 2, conv_clamp, layer_extra))
        b.module("conv1", _synthesis_layer(gen, src, cout, cout, w_dim, res, 1, conv_clamp, layer_extra))
        b.module("torgb", _torgb_layer(gen, src, cout, w_dim, conv_clamp))
        num_ws += num_conv + (1 if is_last else 0)
        blocks.append((f"b{res}", b))
    syn.attr("num_ws", num_ws)
    for name, b in blocks:
        syn.module(name, b)
    g.module("synthesis", syn)
    g.attr("num_ws", num_ws)

    mp = _Node("MappingNetwork", (), dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws,
                                          **mapping_kwargs), src)
    mp.attr("z_dim", z_dim).attr("c_dim", c_dim).attr("w_dim", w_dim).attr("num_ws", num_ws)
    mp.attr("num_layers", mapping_layers).attr("w_avg_beta", 0.995)
    embed_features = w_dim if c_dim > 0 else 0
    if c_dim > 0:
        mp.module("embed", _fc(gen, src, c_dim, embed_features))
    features = [z_dim + embed_features] + [w_dim] * (mapping_layers - 1) + [w_dim]
    for idx in range(mapping_layers):
        mp.module(f"fc{idx}", _fc(gen, src, features[idx], features[idx + 1], activation="lrelu", lr=0.01,
                                  init_kwargs=dict(activation="lrelu", lr_multiplier=0.01)))
    mp.buffer("w_avg", torch.zeros(w_dim))  # filled in below from the mapping's mean output
    g.module("mapping", mp)
    return g


def _conv2d_layer(gen: torch.Generator, src: str, cin: int, cout: int, k: int, *, activation: str = "linear",
                  bias: bool = True, down: int = 1, conv_clamp: float | None = None, kwargs: dict) -> _Node:
    node = _Node("Conv2dLayer", (cin, cout), kwargs, src)
    node.attr("activation", activation).attr("up", 1).attr("down", down).attr("conv_clamp", conv_clamp)
    node.buffer("resample_filter", fir_2d(BLUR_TAPS))
    node.attr("padding", k // 2).attr("weight_gain", np.float64(1 / np.sqrt(cin * k * k)))
    node.attr("act_gain", np.float64(np.sqrt(2)) if activation == "lrelu" else 1)
    node.param("weight", torch.randn(cout, cin, k, k, generator=gen))
    if bias:
        node.param("bias", torch.randn(cout, generator=gen) * 0.1)
    else:
        node.attr("bias", None)
    return node


def _nv_discriminator(gen: torch.Generator, src: str, easydict: type, *, c_dim: int, img_resolution: int,
                      channel_base: int, channel_max: int, conv_clamp: float | None, num_fp16_res: int,
                      mbstd_group_size: int = 4) -> _Node:
    """The official resnet ``Discriminator`` tree (exact names/shapes; values only plausible)."""
    log2 = int(math.log2(img_resolution))
    resolutions = [2 ** i for i in range(log2, 2, -1)]
    ch = {r: min(channel_base // r, channel_max) for r in resolutions + [4]}
    fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
    d = _Node("Discriminator", (), dict(block_kwargs=easydict(), mapping_kwargs=easydict(),
                                        epilogue_kwargs=easydict(mbstd_group_size=mbstd_group_size),
                                        channel_base=channel_base, channel_max=channel_max,
                                        num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, c_dim=c_dim,
                                        img_resolution=img_resolution, img_channels=3), src)
    d.attr("c_dim", c_dim).attr("img_resolution", img_resolution).attr("img_resolution_log2", log2)
    d.attr("img_channels", 3).attr("block_resolutions", list(resolutions))
    layer_idx = 0
    for res in resolutions:
        cin = ch[res] if res < img_resolution else 0
        tmp, cout = ch[res], ch[res // 2]
        use_fp16 = res >= fp16_resolution
        b = _Node("DiscriminatorBlock", (cin, tmp, cout), dict(resolution=res, first_layer_idx=layer_idx,
                                                               use_fp16=use_fp16, img_channels=3,
                                                               architecture="resnet", conv_clamp=conv_clamp), src)
        b.attr("in_channels", cin).attr("resolution", res).attr("img_channels", 3)
        b.attr("first_layer_idx", layer_idx).attr("architecture", "resnet").attr("use_fp16", use_fp16)
        b.attr("channels_last", False)
        b.buffer("resample_filter", fir_2d(BLUR_TAPS))
        num_layers = (1 if cin == 0 else 0) + 3
        b.attr("num_layers", num_layers)
        common = dict(trainable=True, conv_clamp=conv_clamp, channels_last=False)
        if cin == 0:
            b.module("fromrgb", _conv2d_layer(gen, src, 3, tmp, 1, activation="lrelu", conv_clamp=conv_clamp,
                                              kwargs=dict(kernel_size=1, activation="lrelu", **common)))
        b.module("conv0", _conv2d_layer(gen, src, tmp, tmp, 3, activation="lrelu", conv_clamp=conv_clamp,
                                        kwargs=dict(kernel_size=3, activation="lrelu", **common)))
        b.module("conv1", _conv2d_layer(gen, src, tmp, cout, 3, activation="lrelu", down=2, conv_clamp=conv_clamp,
                                        kwargs=dict(kernel_size=3, activation="lrelu", down=2, trainable=True,
                                                    resample_filter=[1, 3, 3, 1], conv_clamp=conv_clamp,
                                                    channels_last=False)))
        b.module("skip", _conv2d_layer(gen, src, tmp, cout, 1, bias=False, down=2,
                                       kwargs=dict(kernel_size=1, bias=False, down=2, trainable=True,
                                                   resample_filter=[1, 3, 3, 1], channels_last=False)))
        d.module(f"b{res}", b)
        layer_idx += num_layers
    c4 = ch[4]
    ep = _Node("DiscriminatorEpilogue", (c4,), dict(cmap_dim=0, resolution=4, mbstd_group_size=mbstd_group_size,
                                                   img_channels=3, architecture="resnet", conv_clamp=conv_clamp), src)
    ep.attr("in_channels", c4).attr("cmap_dim", 0).attr("resolution", 4).attr("img_channels", 3)
    ep.attr("architecture", "resnet")
    mb = _Node("MinibatchStdLayer", (), dict(group_size=mbstd_group_size, num_channels=1), src)
    mb.attr("group_size", mbstd_group_size).attr("num_channels", 1)
    ep.module("mbstd", mb)
    ep.module("conv", _conv2d_layer(gen, src, c4 + 1, c4, 3, activation="lrelu", conv_clamp=conv_clamp,
                                    kwargs=dict(kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)))
    ep.module("fc", _fc(gen, src, c4 * 16, c4, activation="lrelu", init_kwargs=dict(activation="lrelu")))
    ep.module("out", _fc(gen, src, c4, 1))
    d.module("b4", ep)
    return d


def _augment_pipe(src: str) -> _Node:
    """``training.augment.AugmentPipe`` for the 'bgc' preset (buffer shapes approximate)."""
    names = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
             "lumaflip", "hue", "saturation")
    node = _Node("AugmentPipe", (), {n: 1 for n in names}, src)
    node.buffer("p", torch.zeros([]))
    for n in names:
        node.attr(n, 1.0)
    node.buffer("Hz_geom", torch.linspace(-0.1, 0.5, 12))
    node.buffer("Hz_fbank", torch.linspace(-0.2, 0.6, 4 * 25).reshape(4, 25))
    return node


def _reconstruct_persistent_obj(meta: dict) -> Any:  # pickled as torch_utils.persistence._reconstruct_persistent_obj
    raise RuntimeError("placeholder: only its pickled name matters")


class _FakeEasyDict(dict):
    """Pickled as ``dnnlib.util.EasyDict`` the way Python 3.7 did it: NEWOBJ, SETITEMS, BUILD {}."""

    def __reduce_ex__(self, protocol: int):  # type: ignore[override]
        return (copyreg.__newobj__, (type(self),), {}, None, iter(self.items()))


class _PersistentRef:
    """Pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _numpy_scalar_func() -> Any:
    core = getattr(np, "_core", None)
    mod = core.multiarray if core is not None and hasattr(core, "multiarray") else np.core.multiarray  # type: ignore[attr-defined]
    return mod.scalar


class _OfficialPickler(pickle._Pickler):  # type: ignore[misc,name-defined]
    """Pure-Python pickler that writes chosen objects under the official global names."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: io.BufferedIOBase, protocol: int, names: Mapping[int, tuple[str, str]]) -> None:
        super().__init__(file, protocol)
        self._names = names

    def save_global(self, obj: Any, name: str | None = None) -> None:  # noqa: D102
        mapped = self._names.get(id(obj))
        if mapped is None:
            super().save_global(obj, name)
            return
        module, qualname = mapped
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)


def _official_names() -> dict[int, tuple[str, str]]:
    return {
        id(_reconstruct_persistent_obj): ("torch_utils.persistence", "_reconstruct_persistent_obj"),
        id(_FakeEasyDict): ("dnnlib.util", "EasyDict"),
        id(_numpy_scalar_func()): ("numpy.core.multiarray", "scalar"),
    }


def _to_pickle_tree(node: _Node, style: Literal["torch17", "current"], module_src: str | None) -> _PersistentRef:
    """Turn a built tree into persistence records: ``meta.state`` is the module ``__dict__``."""
    state = _module_dict_skeleton(style)
    for kind, name, value in node.items:
        if kind == "param":
            state["_parameters"][name] = torch.nn.Parameter(value.detach().clone(), requires_grad=False)
        elif kind == "buffer":
            state["_buffers"][name] = value.detach().clone()
        elif kind == "module":
            state["_modules"][name] = _to_pickle_tree(value, style, module_src)
        else:
            state[name] = value
    state["_init_args"] = copy.deepcopy(tuple(node.init_args))
    state["_init_kwargs"] = copy.deepcopy(dict(node.init_kwargs))
    meta = dict(type="class", version=PERSISTENCE_VERSION, module_src=module_src or node.module_src,
                class_name=node.class_name, state=state)
    return _PersistentRef(meta)


def _plain(obj: Any) -> Any:
    """EasyDicts -> dicts, recursively (for the raw description returned to tests)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _raw(node: _Node) -> dict[str, Any]:
    return dict(class_name=node.class_name, init_args=tuple(node.init_args), init_kwargs=_plain(node.init_kwargs),
                state_dict=node.state_dict())


def _set_tensor(node: _Node, dotted: str, value: Tensor) -> None:
    head, _, rest = dotted.partition(".")
    for i, (kind, name, v) in enumerate(node.items):
        if name == head:
            if rest:
                _set_tensor(v, rest, value)
            else:
                node.items[i] = (kind, name, value)
            return
    raise KeyError(dotted)


def make_nvidia_pickle(
    path: str | os.PathLike,
    img_resolution: int = 32,
    z_dim: int = 64,
    w_dim: int = 64,
    mapping_layers: int = 2,
    channel_base: int = 1024,
    channel_max: int = 32,
    conv_clamp: float | None = 256,
    num_fp16_res: int = 0,
    seed: int = 0,
    *,
    c_dim: int = 0,
    protocol: int = 3,
    module_dict_style: Literal["torch17", "current"] = "torch17",
    augment_pipe: bool = True,
    legacy_kwargs: bool = False,
    module_src: str | None = None,
) -> dict[str, Any]:
    """Write a stylegan2-ada-pytorch ``network-snapshot-*.pkl`` and return its raw description.

    File: ``pickle.dump(dict(training_set_kwargs=dict, G=, D=, G_ema=, augment_pipe=), f)``
    where each network is a ``torch_utils.persistence`` record (module docstring; the globals
    the stream uses: :func:`pickle_globals`). Defaults to protocol 3 (Python 3.7, as the official
    snapshots) and torch-1.7 ``nn.Module.__dict__`` bookkeeping keys (``module_dict_style=
    "current"``: this torch's keys). ``legacy_kwargs``: G/G_ema constructor kwargs as legacy.py
    writes them for NVIDIA's converted TF models (a superset: mapping ``lr_multiplier``,
    ``activation``, ``w_avg_beta``...; synthesis ``architecture``, ``resample_filter``,
    ``use_noise``, ``activation``). ``module_src`` replaces the embedded source text.

    Returns ``{'G_ema': raw, 'G': raw, 'D': raw, 'training_set_kwargs': dict,
    'augment_pipe': raw | None}`` where ``raw = {'class_name', 'init_args', 'init_kwargs'
    (EasyDicts as plain dicts), 'state_dict' (official ``state_dict()`` keys, order, values)}``.
    ``G`` holds different values from ``G_ema``.
    """
    gen = torch.Generator().manual_seed(seed)
    src = NETWORKS_MODULE_SRC
    kw = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, mapping_layers=mapping_layers,
              channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp, num_fp16_res=num_fp16_res,
              legacy_kwargs=legacy_kwargs)
    g_ema = _nv_generator(gen, src, _FakeEasyDict, **kw)
    g = _nv_generator(gen, src, _FakeEasyDict, **kw)
    # w_avg: mean mapped w (what training tracks), so truncation pulls towards a real centre.
    for node in (g_ema, g):
        raw = _raw(node)
        zs = torch.randn(2048, z_dim, generator=gen)
        cs = F.one_hot(torch.arange(2048) % c_dim, c_dim).float() if c_dim else None
        with torch.no_grad():
            w_avg = nvidia_mapping(raw, zs, cs, num_ws=None).mean(0)
        _set_tensor(node, "mapping.w_avg", w_avg)
    d = _nv_discriminator(gen, src, _FakeEasyDict, c_dim=c_dim, img_resolution=img_resolution,
                          channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp,
                          num_fp16_res=num_fp16_res)
    aug = _augment_pipe(AUGMENT_MODULE_SRC) if augment_pipe else None
    training_set_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path="datasets/ffhq32.zip",
                               use_labels=c_dim > 0, max_size=70000, xflip=False, resolution=img_resolution)
    snapshot: dict[str, Any] = dict(training_set_kwargs=dict(training_set_kwargs))
    for name, node in (("G", g), ("D", d), ("G_ema", g_ema), ("augment_pipe", aug)):
        snapshot[name] = None if node is None else _to_pickle_tree(node, module_dict_style, module_src)
    buf = io.BytesIO()
    _OfficialPickler(buf, protocol, _official_names()).dump(snapshot)
    Path(path).write_bytes(buf.getvalue())
    return dict(G_ema=_raw(g_ema), G=_raw(g), D=_raw(d), training_set_kwargs=training_set_kwargs,
                augment_pipe=None if aug is None else _raw(aug))


def make_malicious_pickle(path: str | os.PathLike, marker_file: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """A complete, otherwise valid snapshot whose every ``module_src`` creates ``marker_file``.

    The official ``_reconstruct_persistent_obj`` would ``exec`` that source, so an official-style
    load creates the marker; a safe loader must load the tensors (or refuse) without creating
    it. Returns the same raw description as :func:`make_nvidia_pickle`.
    """
    evil = (f"import pathlib\npathlib.Path({os.fspath(marker_file)!r}).write_text('module_src was executed')\n"
            + NETWORKS_MODULE_SRC)
    return make_nvidia_pickle(path, module_src=evil, **kwargs)


class _ExecOnLoad:
    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def make_code_exec_pickle(path: str | os.PathLike, marker_file: str | os.PathLike,
                          via: Literal["exec", "system"] = "exec", protocol: int = 3) -> None:
    """A snapshot-shaped pickle whose ``G_ema`` entry runs code when unpickled naively.

    ``via="exec"`` references ``builtins.exec``; ``via="system"`` references ``posix.system``
    (``os.system``). Either creates ``marker_file``. No other globals are referenced, so plain
    ``pickle.load`` reaches the payload without any extra module installed.
    """
    marker = os.fspath(marker_file)
    if via == "exec":
        payload = _ExecOnLoad(exec, f"open({marker!r}, 'w').write('pickle code ran')")
    elif via == "system":
        import shlex
        payload = _ExecOnLoad(os.system, f"echo 'pickle code ran' > {shlex.quote(marker)}")
    else:
        raise ValueError(via)
    snapshot = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", resolution=32),
                    G_ema=payload)
    with open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=protocol)


def pickle_globals(data: bytes | str | os.PathLike) -> list[tuple[str, str]]:
    """Every ``(module, name)`` the (outer) pickle stream imports, in first-use order.

    Handles GLOBAL/INST and protocol-4 STACK_GLOBAL (module and name pushed as strings, possibly
    fetched back from the memo).
    """
    if not isinstance(data, bytes):
        data = Path(data).read_bytes()
    found: list[tuple[str, str]] = []
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # last values pushed, strings or None
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            mod, _, qual = str(arg).partition(" ")
            pair = (mod, qual)
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            pair = (pushed[-2], pushed[-1])
            pushed.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            pushed.append(arg)
            continue
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
            continue
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = pushed[-1] if pushed else None
            continue
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg)))
            continue
        else:
            pushed.append(None)
            continue
        if pair not in found:
            found.append(pair)
    return found


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch: functional forward (float32, force_fp32 semantics)


def _g_entry(pkl_state: Mapping[str, Any]) -> Mapping[str, Any]:
    return pkl_state["G_ema"] if "G_ema" in pkl_state else pkl_state


def _nv_fc(sd: Mapping[str, Tensor], prefix: str, x: Tensor, activation: str, lr: float) -> Tensor:
    w = sd[f"{prefix}.weight"]
    y = x @ (w * (lr / math.sqrt(w.shape[1]))).t() + sd[f"{prefix}.bias"] * lr
    return F.leaky_relu(y, 0.2) * SQRT2 if activation == "lrelu" else y


def _normalize_2nd_moment(x: Tensor) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


@torch.no_grad()
def nvidia_mapping(
    raw: Mapping[str, Any], z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None, *, num_ws: int | None | Literal["auto"] = "auto",
) -> Tensor:
    """Official ``MappingNetwork.forward`` in eval mode: ws ``[N, num_ws, w_dim]``.

    ``num_ws=None`` returns the un-broadcast w ``[N, w_dim]`` (no truncation then).
    """
    g = _g_entry(raw)
    sd, kw = g["state_dict"], g["init_kwargs"]
    mk = kw.get("mapping_kwargs", {})
    n_layers = int(mk.get("num_layers", 8))
    lr = float(mk.get("lr_multiplier", 0.01))
    act = mk.get("activation", "lrelu")
    parts = []
    if kw["z_dim"] > 0:
        parts.append(_normalize_2nd_moment(z.float()))
    if kw.get("c_dim", 0) > 0:
        if c is None:
            raise ValueError("conditional generator needs c")
        parts.append(_normalize_2nd_moment(_nv_fc(sd, "mapping.embed", c.float(), "linear", 1.0)))
    x = torch.cat(parts, dim=1)
    for i in range(n_layers):
        x = _nv_fc(sd, f"mapping.fc{i}", x, act, lr)
    if num_ws is None:
        return x
    if num_ws == "auto":
        num_ws = nvidia_num_ws(g)
    x = x[:, None, :].repeat(1, num_ws, 1)
    if truncation_psi != 1:
        w_avg = sd["mapping.w_avg"]
        if truncation_cutoff is None:
            x = w_avg.lerp(x, truncation_psi)
        else:
            x[:, :truncation_cutoff] = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
    return x


def nvidia_block_resolutions(raw: Mapping[str, Any]) -> list[int]:
    g = _g_entry(raw)
    r = int(g["init_kwargs"]["img_resolution"])
    return [2 ** i for i in range(2, int(math.log2(r)) + 1)]


def nvidia_num_ws(raw: Mapping[str, Any]) -> int:
    """2 per block after 4x4, +1 conv and +1 torgb at 4x4: ``2 * log2(R) - 2``."""
    return 2 * int(math.log2(int(_g_entry(raw)["init_kwargs"]["img_resolution"]))) - 2


def _nv_bias_act(x: Tensor, b: Tensor, act: str, gain: float, clamp: float | None) -> Tensor:
    x = x + b[None, :, None, None]
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _nv_synthesis_layer(sd: Mapping[str, Tensor], p: str, x: Tensor, w: Tensor, *, up: int, conv_clamp: float | None,
                        noise_mode: str, generator: torch.Generator | None) -> Tensor:
    styles = _nv_fc(sd, f"{p}.affine", w, "linear", 1.0)  # [N, I]
    weight = sd[f"{p}.weight"]  # [O, I, k, k], no weight gain (demodulation cancels it)
    o, i, kh, kw = weight.shape
    wt = weight[None] * styles[:, None, :, None, None]
    wt = wt * (wt.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if up == 1:
        y = _grouped_modconv(x, wt, transpose=False, padding=kw // 2)
    else:
        f = sd[f"{p}.resample_filter"]
        fw = f.shape[-1]
        pad = kw // 2
        px0 = pad + (fw + up - 1) // 2 - (kw - 1)
        px1 = pad + (fw - up) // 2 - (kw - up)
        y = _grouped_modconv(x, wt, transpose=True, padding=0)
        y = upfirdn2d(y, f, pad=(px0, px1, px0, px1), gain=up ** 2)
    res = y.shape[-1]
    if noise_mode == "const":
        y = y + sd[f"{p}.noise_const"] * sd[f"{p}.noise_strength"]
    elif noise_mode == "random":
        y = y + torch.randn(y.shape[0], 1, res, res, generator=generator) * sd[f"{p}.noise_strength"]
    elif noise_mode != "none":
        raise ValueError(noise_mode)
    return _nv_bias_act(y, sd[f"{p}.bias"], "lrelu", SQRT2, conv_clamp)


def _nv_torgb(sd: Mapping[str, Tensor], p: str, x: Tensor, w: Tensor, conv_clamp: float | None) -> Tensor:
    weight = sd[f"{p}.weight"]  # [3, I, 1, 1]
    styles = _nv_fc(sd, f"{p}.affine", w, "linear", 1.0) * (1 / math.sqrt(weight[0].numel()))
    wt = weight[None] * styles[:, None, :, None, None]
    y = _grouped_modconv(x, wt, transpose=False, padding=0)
    return _nv_bias_act(y, sd[f"{p}.bias"], "linear", 1.0, conv_clamp)


@torch.no_grad()
def nvidia_synthesis(raw: Mapping[str, Any], ws: Tensor, noise_mode: str = "const",
                     generator: torch.Generator | None = None) -> Tensor:
    """Official ``SynthesisNetwork.forward(ws, noise_mode=..., force_fp32=True)``, skip arch."""
    g = _g_entry(raw)
    sd, skw = g["state_dict"], g["init_kwargs"].get("synthesis_kwargs", {})
    if skw.get("architecture", "skip") != "skip":
        raise NotImplementedError("oracle covers the default 'skip' architecture only")
    conv_clamp = skw.get("conv_clamp")
    ws = ws.float()
    if ws.shape[1] != nvidia_num_ws(g):
        raise ValueError(f"expected {nvidia_num_ws(g)} ws, got {ws.shape[1]}")
    x = img = None
    w_idx = 0
    for res in nvidia_block_resolutions(g):
        b = f"synthesis.b{res}"
        if res == 4:
            x = sd[f"{b}.const"][None].repeat(ws.shape[0], 1, 1, 1)
            x = _nv_synthesis_layer(sd, f"{b}.conv1", x, ws[:, w_idx], up=1, conv_clamp=conv_clamp,
                                    noise_mode=noise_mode, generator=generator)
            w_rgb = ws[:, w_idx + 1]
            w_idx += 1
        else:
            x = _nv_synthesis_layer(sd, f"{b}.conv0", x, ws[:, w_idx], up=2, conv_clamp=conv_clamp,
                                    noise_mode=noise_mode, generator=generator)
            x = _nv_synthesis_layer(sd, f"{b}.conv1", x, ws[:, w_idx + 1], up=1, conv_clamp=conv_clamp,
                                    noise_mode=noise_mode, generator=generator)
            w_rgb = ws[:, w_idx + 2]
            w_idx += 2
        if img is not None:
            f = sd[f"{b}.resample_filter"]
            fw = f.shape[-1]
            img = upfirdn2d(img, f, up=2, pad=((fw + 1) // 2, (fw - 2) // 2, (fw + 1) // 2, (fw - 2) // 2), gain=4)
        y = _nv_torgb(sd, f"{b}.torgb", x, w_rgb, conv_clamp)
        img = y if img is None else img + y
    assert img is not None
    return img


@torch.no_grad()
def nvidia_forward(
    pkl_state: Mapping[str, Any],
    z: Tensor | None = None,
    ws: Tensor | None = None,
    c: Tensor | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
) -> Tensor:
    """Official ``G_ema(z, c, truncation_psi, truncation_cutoff, noise_mode=..., force_fp32=True)``.

    ``pkl_state``: what :func:`make_nvidia_pickle` returned (or its ``'G_ema'`` entry). Give
    either ``z`` ``[N, z_dim]`` or ``ws`` ``[N, num_ws, w_dim]`` (then ``G_ema.synthesis(ws)``,
    no truncation). Returns ``[N, 3, R, R]`` float32.
    """
    if (z is None) == (ws is None):
        raise ValueError("give exactly one of z and ws")
    if ws is None:
        ws = nvidia_mapping(pkl_state, z, c, truncation_psi, truncation_cutoff)  # type: ignore[arg-type]
    elif truncation_psi != 1 or truncation_cutoff is not None:
        raise ValueError("truncation applies to z only (the official synthesis takes ws as given)")
    return nvidia_synthesis(pkl_state, ws, noise_mode)
