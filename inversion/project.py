"""Projection of images into a StyleGAN2 latent space: one API, three methods.

- ``"w+"``: Image2StyleGAN (Abdal et al. 2019). One latent per synthesis layer (W+), initialised
  at the mean ``w``, optimised with Adam on pixel MSE + a perceptual loss. The paper's perceptual
  term is a weighted sum of VGG16 feature distances; ganbrush uses LPIPS-VGG16, which is that
  sum with learned per-channel weights. Noise stays at the generator's constant maps.
- ``"w"``: the StyleGAN2 projector (Karras et al. 2020, appendix). One ``w`` shared by all
  layers plus every noise map, LPIPS loss, noise regularisation, a ramped learning rate and a
  decaying Gaussian perturbation of ``w`` that helps escape poor local minima early on.
- ``"pti"``: pivotal tuning (Roich et al. 2021). The ``w`` projector (noise kept constant, as in
  the paper) gives a pivot; then a copy of the generator is tuned so the pivot reproduces the
  photo (LPIPS + L2), while the locality regulariser keeps the generator's output unchanged for
  latents sampled around the pivot. The result carries the tuned weights as a delta.
- ``"encoder"``: one forward pass of the e4e-style encoder (:mod:`inversion.encoder`) trained for
  this generator; no optimisation.
- ``"encoder+pti"``: pivotal tuning with the encoder's W+ code as the pivot, so the pivot phase
  (``steps``) is skipped and only the ``pti_steps`` tuning steps run.

Conventions: ``target`` images are float32 NCHW RGB in [-1, 1] at the generator's resolution;
``ws`` are ``[N, num_ws, w_dim]``; noise maps ``[N, 1, r, r]`` in :meth:`Generator.noise_maps`
order. Every method optimises a batch of images independently, except that ``"pti"`` tunes one
generator for the whole batch (the paper's multi-image variant); invert one image at a time for
per-image generators.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from ganbrush_core.checks import check_float, check_int
from ganbrush_core.devices import on_device
from inversion.encoder import Encoder, EncoderError, check_encoder, encode, load_encoder
from inversion.losses import mse, noise_regularization, normalize_noises_
from inversion.result import Inversion
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator, sample_w

Method = Literal["w+", "w", "pti", "encoder", "encoder+pti"]
METHODS: tuple[str, ...] = get_args(Method)
#: Methods that start from the encoder's code instead of optimising a latent.
ENCODER_METHODS: frozenset[str] = frozenset({"encoder", "encoder+pti"})
#: Methods that tune a copy of the generator (their :class:`Inversion` carries a weight delta).
TUNING_METHODS: frozenset[str] = frozenset({"pti", "encoder+pti"})

#: ``progress(step, total_steps, losses)``: called after every optimisation step.
ProgressFn = Callable[[int, int, dict[str, float]], None]

#: Most steps of each phase (``steps``, ``pti_steps``): about 50 min a phase at 64 px on two CPU
#: cores (~0.3 s a step). Unbounded, a typo such as ``--steps 1000000000`` starts an 80,000-hour run.
MAX_STEPS = 10_000
#: Largest learning rate (``lr``, ``pti_lr``); the defaults are 0.01 (W+), 0.1 (W) and 3e-3 (PTI).
MAX_LR = 1.0
#: Most ``w`` samples for the mean / spread of ``w`` (the projector's default is 10,000).
MAX_W_AVG_SAMPLES = 1_000_000
#: How CLI users name the settings they can give as flags, for error messages.
_FLAGS = {"steps": "steps (--steps)", "pti_steps": "pti_steps (--pti-steps)", "seed": "seed (--seed)"}


@dataclass
class ProjectionSettings:
    """Hyper-parameters; the defaults follow each paper, scaled to CPU-sized step budgets.

    ``steps`` is the W/W+ phase; ``pti_steps`` the generator-tuning phase of ``"pti"``.
    """

    steps: int = 300
    lr: float | None = None  # None: 0.01 for "w+" (Image2StyleGAN), 0.1 peak for "w" / the PTI pivot
    mse_weight: float = 1.0  # "w+" pixel term; PTI's L2 term
    perceptual_weight: float = 1.0
    # StyleGAN2 projector
    w_avg_samples: int = 10_000
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_reg_weight: float = 1e5
    optimize_noise: bool = True  # "w" only; the PTI pivot keeps noise constant
    # Pivotal tuning
    pti_steps: int = 200
    # The paper's 3e-4 is for 1024 px and ~350 steps. For CPU minutes at 64 px, 3e-3 tunes faster: after 100 pivot
    # and 400 tuning steps LPIPS was 0.045 (3e-3), 0.050 (1e-3), 0.072 (3e-4) on two held-out faces.
    pti_lr: float = 3e-3
    locality_weight: float = 0.1
    locality_alpha: float = 30.0
    locality_interval: int = 10
    seed: int = 0
    # The generator's synthesis in the optimisation loops under autocast (bf16 on the CPU, fp16 with
    # a loss scaler on CUDA); losses, optimiser and the final render stay float32. Off by default:
    # see the README's "GPU users" for what it measured on the CPU.
    mixed_precision: bool = False

    def validate(self) -> ProjectionSettings:
        """Refuse settings that cannot give an inversion (:class:`ValueError` naming the range):
        non-finite numbers, ``steps`` outside 1..:data:`MAX_STEPS`, ``pti_steps`` outside
        0..:data:`MAX_STEPS`, learning rates outside (0, :data:`MAX_LR`], negative weights. Returns
        ``self``. :func:`invert` calls it before any work; CLIs call it before loading anything."""
        check_int(_FLAGS["steps"], self.steps, 1, MAX_STEPS)
        check_int(_FLAGS["pti_steps"], self.pti_steps, 0, MAX_STEPS)
        check_int(_FLAGS["seed"], self.seed, 0, 2**63 - 3)  # the optimisers seed seed + 1, seed + 2
        check_int("w_avg_samples", self.w_avg_samples, 1, MAX_W_AVG_SAMPLES)
        check_int("locality_interval", self.locality_interval, 1, MAX_STEPS)
        if not isinstance(self.mixed_precision, bool):
            raise ValueError(f"mixed_precision must be True or False, got {self.mixed_precision!r}")
        if self.lr is not None:
            check_float("lr", self.lr, 0, MAX_LR, lo_open=True)
        check_float("pti_lr", self.pti_lr, 0, MAX_LR, lo_open=True)
        for name in ("mse_weight", "perceptual_weight", "noise_reg_weight", "locality_weight", "locality_alpha",
                     "initial_noise_factor"):
            check_float(name, getattr(self, name), 0, 1e12)
        for name in ("noise_ramp_length", "lr_rampdown_length", "lr_rampup_length"):  # divisors
            check_float(name, getattr(self, name), 0, 1, lo_open=True)
        return self


def projection_settings(steps: int | None = None, settings: ProjectionSettings | None = None,
                        **overrides: object) -> ProjectionSettings:
    """A checked copy of ``settings`` (default :class:`ProjectionSettings`) with ``steps`` and any
    other field given as a keyword replaced (``TypeError`` for an unknown field; ``ValueError``
    from :meth:`ProjectionSettings.validate`)."""
    s = copy.deepcopy(settings) if settings is not None else ProjectionSettings()
    if steps is not None:
        overrides["steps"] = steps
    for key, value in overrides.items():
        if not hasattr(s, key):
            raise TypeError(f"invert() got an unknown setting {key!r}")
        setattr(s, key, value)
    return s.validate()


def _w_stats(G: Generator, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    """Mean ``w`` and its RMS spread, from seeded samples of the mapping network."""
    w = sample_w(G, samples, seed)
    w_mean = w.mean(0)
    w_std = float(((w - w_mean).square().sum(1).mean()) ** 0.5)
    return w_mean, w_std


def _projector_lr(t: float, peak: float, s: ProjectionSettings) -> float:
    """StyleGAN2 projector schedule: linear ramp-up, cosine ramp-down, over progress ``t`` in [0, 1]."""
    ramp = min(1.0, (1.0 - t) / s.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / s.lr_rampup_length)
    return peak * ramp


def _check_target(G: Generator, target: torch.Tensor) -> torch.Tensor:
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4 or tuple(target.shape[1:]) != expected:
        raise ValueError(f"target must be [N, {expected[0]}, {expected[1]}, {expected[2]}] images in [-1, 1] "
                         f"at the generator's resolution, got {tuple(target.shape)}; align the face first "
                         f"(inversion.align_face) to {G.img_resolution} px")
    if not bool(torch.isfinite(target).all()):
        raise ValueError("target images hold NaN or infinite values; give an image in [-1, 1]")
    if target.min() < -1.5 or target.max() > 1.5:
        raise ValueError("target images must be in [-1, 1] (got values outside [-1.5, 1.5]); "
                         "convert uint8 with x / 127.5 - 1")
    return target.to(G.w_avg.device, torch.float32)


class _Recorder:
    """Per-step loss history + the progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress, self.history, self.step = total, progress, [], 0

    def __call__(self, phase: str, **losses: torch.Tensor | float) -> None:
        self.step += 1
        row = {"step": float(self.step), **{k: float(v.detach() if isinstance(v, torch.Tensor) else v)
                                            for k, v in losses.items()}}
        self.history.append({"phase": phase, **row})
        if self.progress is not None:
            self.progress(self.step, self.total, {k: v for k, v in row.items() if k != "step"})


class _Precision:
    """Float32, or with ``mixed_precision`` the generator's synthesis under autocast (bf16 on the
    CPU; fp16 on CUDA, whose small gradients a dynamic loss scale keeps from underflowing)."""

    def __init__(self, device: torch.device, s: ProjectionSettings) -> None:
        self.device_type, self.enabled = device.type, s.mixed_precision
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.enabled and self.dtype == torch.float16)

    def synthesis(self, G: Generator, ws: torch.Tensor, **kwargs) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled):
            img = G.synthesis(ws, **kwargs)
        return img.float()  # the losses compare in float32

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()


def _const_noises(G: Generator, n: int) -> list[torch.Tensor]:
    """``G``'s constant noise maps, one copy per image (what projections that keep noise fixed use)."""
    return [m.expand(n, -1, -1, -1).clone() for m in G.noise_maps()]


def _project_w_plus(G: Generator, target: torch.Tensor, perceptual: nn.Module, s: ProjectionSettings,
                    record: _Recorder) -> tuple[torch.Tensor, list[torch.Tensor]]:
    n = target.shape[0]
    w_mean, _ = _w_stats(G, s.w_avg_samples, s.seed)
    ws = w_mean[None, None].repeat(n, G.num_ws, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=s.lr or 0.01, betas=(0.9, 0.999), eps=1e-8)
    amp = _Precision(ws.device, s)
    for _ in range(s.steps):
        img = amp.synthesis(G, ws, noise_mode="const")
        l_mse, l_per = mse(img, target), perceptual(img, target)
        loss = (s.mse_weight * l_mse + s.perceptual_weight * l_per).sum()
        amp.step(loss, opt)
        record("w+", loss=loss / n, mse=l_mse.mean(), lpips=l_per.mean())
    return ws.detach(), _const_noises(G, n)


def _project_w(G: Generator, target: torch.Tensor, perceptual: nn.Module, s: ProjectionSettings,
               record: _Recorder, optimize_noise: bool, phase: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    n = target.shape[0]
    w_mean, w_std = _w_stats(G, s.w_avg_samples, s.seed)
    w = w_mean[None].repeat(n, 1).clone().requires_grad_(True)
    if optimize_noise:
        gen = torch.Generator(device="cpu").manual_seed(s.seed)
        noises = [torch.randn(n, 1, *m.shape[-2:], generator=gen).to(w.device).requires_grad_(True)
                  for m in G.noise_maps()]
    else:
        noises = _const_noises(G, n)
    params = [w] + (noises if optimize_noise else [])
    peak = s.lr or 0.1
    opt = torch.optim.Adam(params, lr=peak, betas=(0.9, 0.999))
    gen = torch.Generator(device="cpu").manual_seed(s.seed + 1)
    amp = _Precision(w.device, s)
    for step in range(s.steps):
        t = step / max(s.steps, 1)
        noise_scale = w_std * s.initial_noise_factor * max(0.0, 1.0 - t / s.noise_ramp_length) ** 2
        for group in opt.param_groups:
            group["lr"] = _projector_lr(t, peak, s)
        w_noisy = w + torch.randn(w.shape, generator=gen).to(w.device) * noise_scale
        img = amp.synthesis(G, w_noisy[:, None].repeat(1, G.num_ws, 1), noises=noises)
        l_per = perceptual(img, target)
        loss = l_per.sum()
        losses = {"lpips": l_per.mean()}
        if optimize_noise:
            reg = noise_regularization(noises)
            loss = loss + s.noise_reg_weight * reg
            losses["noise_reg"] = reg
        amp.step(loss, opt)
        if optimize_noise:
            with torch.no_grad():
                normalize_noises_(noises)
        record(phase, loss=loss / n, **losses)
    ws = w.detach()[:, None].repeat(1, G.num_ws, 1)
    return ws, [m.detach() for m in noises]


def _tune_generator(G: Generator, ws: torch.Tensor, noises: list[torch.Tensor], target: torch.Tensor,
                    perceptual: nn.Module, s: ProjectionSettings, record: _Recorder) -> Generator:
    """Pivotal tuning of a copy of ``G`` around the pivots ``ws`` (Roich et al. 2021, eq. 2-4)."""
    tuned = copy.deepcopy(G).requires_grad_(False)
    tuned.synthesis_network.requires_grad_(True)  # the mapping network is not used by the pivots
    opt = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=s.pti_lr)
    gen = torch.Generator(device="cpu").manual_seed(s.seed + 2)
    pivot = ws[:, 0]
    amp = _Precision(ws.device, s)
    for step in range(s.pti_steps):
        img = amp.synthesis(tuned, ws, noises=noises)
        l_per, l_mse = perceptual(img, target), mse(img, target)
        loss = (s.perceptual_weight * l_per + s.mse_weight * l_mse).sum()
        losses = {"lpips": l_per.mean(), "mse": l_mse.mean()}
        if s.locality_weight > 0 and step % s.locality_interval == 0:
            # Locality regulariser: latents at distance alpha from the pivot, towards random w's,
            # must render as the original generator renders them.
            z = torch.randn(pivot.shape[0], G.z_dim, generator=gen).to(pivot.device)
            with torch.no_grad():
                w_z = G.mapping(z)[:, 0]
                direction = w_z - pivot
                w_r = pivot + s.locality_alpha * direction / direction.norm(dim=1, keepdim=True)
                ws_r = w_r[:, None].repeat(1, G.num_ws, 1)
                ref = amp.synthesis(G, ws_r, noise_mode="const")
            out = amp.synthesis(tuned, ws_r, noise_mode="const")
            l_loc = (mse(out, ref) + perceptual(out, ref)).sum()
            loss = loss + s.locality_weight * l_loc
            losses["locality"] = l_loc / pivot.shape[0]
        amp.step(loss, opt)
        record("pti", loss=loss / pivot.shape[0], **losses)
    return tuned.eval().requires_grad_(False)


def generator_delta(original: Generator, tuned: Generator) -> dict[str, torch.Tensor]:
    """``tuned - original`` for every parameter that changed (the PTI result, compactly)."""
    base = dict(original.named_parameters())
    return {name: (p.detach() - base[name].detach()).cpu() for name, p in tuned.named_parameters()
            if not torch.equal(p, base[name])}


@functools.lru_cache(maxsize=4)
def _shipped_encoder(device: torch.device) -> Encoder:
    return load_encoder("default", device=device)


def resolve_encoder(encoder: Encoder | str | os.PathLike | None, G: Generator) -> Encoder:
    """The encoder to use with ``G``, on ``G``'s device: ``encoder`` itself, the file it names, or
    (``None`` / ``"default"``) the shipped one, read once per device. A file or the shipped encoder
    trained for another generator raises :class:`~inversion.encoder.EncoderError`."""
    device = G.w_avg.device
    if isinstance(encoder, Encoder):
        return check_encoder(on_device(encoder, device), G)
    if encoder is None or str(encoder) == "default":
        return check_encoder(_shipped_encoder(device), G)
    return load_encoder(encoder, G, device=device)


def default_method(G: Generator, encoder: Encoder | str | os.PathLike | None = None) -> str:
    """The method to use when the user names none: ``encoder+pti`` where an encoder fits ``G``
    (the encoder's pivot, then tuning: the lowest LPIPS per second in the inversion benchmark),
    else ``w+``."""
    try:
        resolve_encoder(encoder, G)
    except EncoderError:
        return "w+"
    return "encoder+pti"


def invert(G: Generator, image: torch.Tensor, method: Method = "w+", steps: int | None = None,
           perceptual: nn.Module | None = None, progress: ProgressFn | None = None,
           settings: ProjectionSettings | None = None, device: str | torch.device | None = None,
           encoder: Encoder | str | os.PathLike | None = None, **overrides) -> Inversion:
    """Project ``image`` (``[N, 3, H, W]`` or ``[3, H, W]`` in [-1, 1], at ``G``'s resolution)
    into ``G``'s latent space.

    ``steps`` (and any :class:`ProjectionSettings` field given as a keyword) overrides the
    defaults; ``perceptual`` defaults to LPIPS-VGG16 resolved offline. ``progress`` is called
    after every step (the CLI shows it as a tqdm bar). ``G`` itself is never modified.
    ``device`` (``"cpu"``, ``"cuda"``, ... see :mod:`ganbrush_core.devices`): where the
    optimisation runs, generator, latents, noise and LPIPS together (a copy of ``G`` when it
    is elsewhere); ``None``: ``G``'s device. The result is on the CPU.
    ``encoder`` (``"encoder"`` and ``"encoder+pti"`` only): an :class:`~inversion.encoder.Encoder`
    or a weight file; ``None``: the shipped encoder, which only fits the shipped generator
    (:class:`~inversion.encoder.EncoderError` for another one).
    """
    if method not in METHODS:
        raise ValueError(f"unknown inversion method {method!r}; choose one of {', '.join(METHODS)}")
    s = projection_settings(steps, settings, **overrides)
    G = on_device(G, device)
    if isinstance(perceptual, nn.Module):
        perceptual = on_device(perceptual, device)
    target = _check_target(G, image)
    E = resolve_encoder(encoder, G) if method in ENCODER_METHODS else None
    if perceptual is None:
        from ganbrush_core.metrics import lpips_model

        perceptual = lpips_model("vgg", device=target.device)
    was_training = G.training
    frozen = [p.requires_grad for p in G.parameters()]
    G.eval().requires_grad_(False)
    torch.manual_seed(s.seed)
    total = (0 if method in ENCODER_METHODS else s.steps) + (s.pti_steps if method in TUNING_METHODS else 0)
    record = _Recorder(total, progress)
    started = time.perf_counter()
    try:
        # The latent (the pivot of the tuning methods), then the generator tuning if any.
        if method == "w+":
            ws, noises = _project_w_plus(G, target, perceptual, s, record)
        elif method == "w":
            ws, noises = _project_w(G, target, perceptual, s, record, s.optimize_noise, "w")
        elif method == "pti":
            ws, noises = _project_w(G, target, perceptual, s, record, optimize_noise=False, phase="pivot")
        else:
            ws, noises = encode(E, target), _const_noises(G, target.shape[0])
        used, delta = G, None
        if method in TUNING_METHODS:
            used = _tune_generator(G, ws, noises, target, perceptual, s, record)
            delta = generator_delta(G, used)
        with torch.no_grad():
            recon = used.synthesis(ws, noises=noises)
            final = {"lpips": float(perceptual(recon, target).mean()), "mse": float(mse(recon, target).mean())}
    finally:
        for p, flag in zip(G.parameters(), frozen):
            p.requires_grad_(flag)
        G.train(was_training)
    return Inversion(ws=ws.cpu(), noises=[m.cpu() for m in noises], reconstruction=recon.cpu(),
                     target=target.cpu(), method=method, steps=total, history=record.history,
                     final_losses=final, generator_hash=generator_hash(G), generator_delta=delta,
                     seconds=time.perf_counter() - started)
