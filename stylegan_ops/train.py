"""StyleGAN2 training: alternating G/D steps with lazy regularisation, style mixing, an EMA
generator, DiffAugment; run by :class:`ganbrush_core.training.TrainingRun` (checkpoints that
resume exactly where they stopped, losing at most one interval to a kill, sample grids and loss
curves).

A run folder holds ``config.json``, ``checkpoint.pt`` (all training state, read back with
``torch.load(weights_only=True)``), ``generator_ema.safetensors`` (loadable with
:func:`stylegan_ops.load_generator`), ``log.jsonl``, ``samples_<images>.png`` and ``losses.png``.

Under ``torchrun`` (see :mod:`ganbrush_core.distributed`) ``cfg.batch`` is the global batch, split
over the ranks. What StyleGAN2-ADA keeps consistent across GPUs is kept here too: the gradients
of the main losses and of the lazy regularisers (R1 every ``r1_interval``, path length every
``pl_interval`` steps, on every rank at the same steps) are averaged before each Adam step, whose
lr and betas are rescaled for the lazy interval as in one process; the path-length running mean
is the mean over all ranks' samples; ``w_avg`` is averaged; the EMA half-life counts global
images; latents, noise, style-mixing cuts and DiffAugment's draws are each rank's rows of one
global draw. DiffAugment has no adaptive probability, so there is no augment ``p`` to share.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganbrush_core import distributed
from ganbrush_core.devices import resolve_device
from ganbrush_core.distributed import randn_rows
from ganbrush_core.gan_losses import GanLoss, generator_adversarial_loss
from ganbrush_core.gan_losses import discriminator_loss as adversarial_d_loss
from ganbrush_core.training import ResumableBatches, Sample, Trainable, TrainingRun
from stylegan_ops.augment import POLICIES, diff_augment
from stylegan_ops.checkpoints import save_generator
from stylegan_ops.discriminators import DiscKind, build_discriminator, save_discriminator
from stylegan_ops.losses import PathLengthRegularizer, discriminator_loss, generator_loss, r1_penalty
from stylegan_ops.networks import Generator, GeneratorConfig, ModConv, channels_for, set_modconv
from stylegan_ops.projected import ProjectedConfig

#: The discriminator's file in a run folder (float16; continues a run, here or on a GPU).
DISCRIMINATOR_FILE = "discriminator.safetensors"
#: Adam rate of the projected discriminator's heads when ``d_lr`` is None (the Projected GAN setting).
PROJECTED_D_LR = 0.002


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (saved as ``config.json``; a resumed run keeps its own)."""

    resolution: int = 64
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 4
    channel_base: int = 8192
    channel_max: int = 256
    batch: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = None  # None: 0.0002 * res^2 / batch (the StyleGAN2-ADA heuristic)
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    augment: tuple[str, ...] = POLICIES
    kimg_per_interval: float = 4.0
    seed: int = 0
    mixed_precision: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # bf16 autocast on the CPU too (benchmarks/step.py measures it)
    # How G's modulated convs compute in training (networks.ModConv): batched is the same result
    # 1.18x faster per CPU step (benchmarks/step.py) and what NVIDIA's trainer does too.
    modconv: str = ModConv.BATCHED.value
    disc: str = DiscKind.STYLEGAN2.value
    d_lr: float | None = None  # None: ``lr`` for the StyleGAN2 D, PROJECTED_D_LR for the projected one
    projected: dict = field(default_factory=dict)  # ProjectedConfig fields other than the resolution
    extra: dict = field(default_factory=dict)

    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.resolution**2 / self.batch

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(img_resolution=self.resolution, z_dim=self.z_dim, w_dim=self.w_dim,
                               mapping_layers=self.mapping_layers,
                               channels=channels_for(self.resolution, self.channel_base, self.channel_max))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["betas"] = tuple(d["betas"])
        d["augment"] = tuple(d["augment"])
        return cls(**d)


# Named presets; "tiny" is for tests and smoke runs.
PRESETS: dict[str, dict] = {
    "tiny": dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, batch=8,
                 kimg_per_interval=0.2),
    # Sized for two CPU cores: 128 channels up to 16 px, then 64 and 32, about 20 img/s (the
    # 4096-base variant ran at 10 img/s; at a two-hour budget more images shown wins).
    "cpu64": dict(resolution=64, z_dim=256, w_dim=256, mapping_layers=4, channel_base=2048, channel_max=128,
                  batch=16, kimg_per_interval=4.0),
    "gpu64": dict(resolution=64, z_dim=512, w_dim=512, mapping_layers=8, channel_base=16384, channel_max=512,
                  batch=64, kimg_per_interval=20.0),
}


def _lazy_adam(params, lr: float, cfg: TrainConfig, interval: int) -> torch.optim.Adam:
    # Regularising only every `interval` steps (0: never): scale lr and betas so the effective step matches.
    c = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(cfg.betas[0] ** c, cfg.betas[1] ** c), eps=1e-8)


class Trainer(Trainable):
    """Networks, optimisers, data and one G/D step; :func:`train` runs it in a run folder."""

    def __init__(self, cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike,
                 device: str | torch.device = "cpu") -> None:
        self.cfg, self.run_dir, self.device = cfg, Path(run_dir), resolve_device(device)
        self.world = distributed.current()
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.generator_config()).to(self.device).train()
        set_modconv(self.G, cfg.modconv)
        self.disc = DiscKind(cfg.disc)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = _lazy_adam(self.G.parameters(), cfg.lr, cfg, cfg.pl_interval)
        projected = self.projected_config() if self.disc is DiscKind.PROJECTED else None
        self.D = build_discriminator(self.disc, cfg.resolution, self.G.cfg.channels, projected).to(self.device).train()
        if self.disc is DiscKind.PROJECTED:
            self.D.to(memory_format=torch.channels_last)  # VGG's convs: 8-14 % faster on this CPU
            # No R1, so no lazy interval to rescale for; parameters() holds the heads alone.
            self.opt_D = _lazy_adam(self.D.parameters(), cfg.d_lr or PROJECTED_D_LR, cfg, 0)
        else:
            self.opt_D = _lazy_adam(self.D.parameters(), cfg.d_lr or cfg.lr, cfg, cfg.r1_interval)
        self.pl = PathLengthRegularizer()
        self.step = 0
        self.images_seen = 0
        self.history: list[dict] = []
        loader = distributed.sharded_loader(dataset, cfg.batch, torch.Generator().manual_seed(cfg.seed),
                                            self.world, num_workers=0)
        if len(loader) == 0:
            raise ValueError(f"dataset has {len(dataset)} images, fewer than one batch of {cfg.batch}")
        self.data = ResumableBatches(loader)
        self.fixed_z = torch.randn(16, cfg.z_dim, generator=torch.Generator().manual_seed(1234))

    def projected_config(self) -> ProjectedConfig:
        return ProjectedConfig.from_dict({**self.cfg.projected, "img_resolution": self.cfg.resolution})

    # ---------------------------------------------------------------------------------------
    def _autocast(self):
        enabled = (self.cfg.mixed_precision and self.device.type == "cuda") or (
            self.cfg.cpu_bf16 and self.device.type == "cpu")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _sample_ws(self, n: int) -> torch.Tensor:
        z = randn_rows(n, self.G.z_dim, device=self.device)
        ws = self.G.mapping(z, update_w_avg=True)
        if random.random() < self.cfg.style_mixing_prob:
            # Style mixing: layers from `cut` on take another latent, so styles stay separable.
            cut = random.randint(1, self.G.num_ws - 1)
            ws2 = self.G.mapping(randn_rows(n, self.G.z_dim, device=self.device))
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
        return ws

    def _noises(self, n: int) -> list[torch.Tensor] | None:
        """Per-layer noise for ``n`` rows: ``None`` in one process (``noise_mode="random"`` draws
        the same numbers inside the network), each rank's rows of a global draw under torchrun."""
        if self.world.size == 1:
            return None
        return [randn_rows(n, 1, conv.resolution, conv.resolution, device=self.device)
                for conv in self.G.synthesis_network.styled_convs()]

    def _synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="random", noises=self._noises(ws.shape[0]))

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.augment)

    def _g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.disc is DiscKind.PROJECTED:
            return generator_adversarial_loss(fake_logits, GanLoss.HINGE)
        return generator_loss(fake_logits)

    def _d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.disc is DiscKind.PROJECTED:
            return adversarial_d_loss(real_logits, fake_logits, GanLoss.HINGE)
        return discriminator_loss(real_logits, fake_logits)

    def train_step(self) -> dict[str, float]:
        cfg, stats = self.cfg, {}
        real = next(self.data).to(self.device, non_blocking=True)
        n = real.shape[0]  # this rank's rows of the global batch

        # Generator: non-saturating loss, plus path length every pl_interval steps.
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self._synthesis(self._sample_ws(n))
            loss_g = self._g_loss(self.D(self._augment(fake)).float())
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        stats["loss_G"] = loss_g.item()
        if cfg.pl_weight > 0 and self.step % cfg.pl_interval == 0:
            m = max(n // cfg.pl_batch_shrink, 1)
            pl = self.pl(self.G, self._sample_ws(m), self._noises(m))
            (pl * cfg.pl_weight * cfg.pl_interval).backward()
            stats["pl_penalty"] = pl.item()
        distributed.average_gradients(self.G.parameters())
        self.opt_G.step()

        # Discriminator: logistic loss, plus R1 on reals every r1_interval steps.
        self.D.requires_grad_(True)
        with torch.no_grad(), self._autocast():
            fake = self._synthesis(self._sample_ws(n))
        with self._autocast():
            loss_d = self._d_loss(self.D(self._augment(real)).float(), self.D(self._augment(fake)).float())
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        stats["loss_D"] = loss_d.item()
        if self.disc is DiscKind.STYLEGAN2 and self.step % cfg.r1_interval == 0:
            r1, _ = r1_penalty(self.D, real, self._augment)
            (r1 * (cfg.gamma() / 2) * cfg.r1_interval).backward()
            stats["r1_penalty"] = r1.item()
        distributed.average_gradients(self.D.parameters())
        self.opt_D.step()

        # w_avg is a running mean of each rank's w: linear in them, so one average per step is
        # the running mean over the global batch.
        distributed.average_([self.G.w_avg])
        self._update_ema(n * self.world.size)
        self.step += 1
        self.images_seen += n * self.world.size
        return stats

    @torch.no_grad()
    def _update_ema(self, n: int) -> None:
        ema_images = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup is not None:
            ema_images = min(ema_images, self.images_seen * self.cfg.ema_rampup)
        beta = 0.5 ** (n / max(ema_images, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---------------------------------------------------------------------------------------
    # The run loop's hooks (ganbrush_core.training.Trainable).
    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "pl": self.pl.state_dict(),
            "images_seen": self.images_seen, "data": self.data.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("G", "D", "G_ema", "opt_G", "opt_D", "pl"):
            getattr(self, name).load_state_dict(state[name])
        self.images_seen = int(state["images_seen"])
        if "data" in state:  # checkpoints from before the shared loop restart the data order
            self.data.load_state_dict(state["data"])

    def save_weights(self, run_dir: Path) -> None:
        meta = {"kimg": f"{self.images_seen / 1000:.1f}", "step": str(self.step)}
        save_generator(self.G_ema, run_dir / "generator_ema.safetensors", metadata=meta)
        save_discriminator(self.D, run_dir / DISCRIMINATOR_FILE, metadata=meta)

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": round(self.images_seen / 1000, 3)}

    @torch.no_grad()
    def sample(self) -> Sample:
        """The EMA generator on 16 fixed latents, constant noise (a 4x4 grid)."""
        return Sample(self.G_ema(self.fixed_z.to(self.device), noise_mode="const"), ncols=4)


def train(cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike, kimg: float,
          device: str = "cpu", resume_from: str | os.PathLike | None = None, progress: bool = True,
          minutes: float | None = None) -> Trainer:
    """Train until ``kimg`` thousand real images have been shown (counting from the run's start),
    or until ``minutes`` of wall time have passed in this call (equal-time comparisons; a resumed
    run gets a fresh budget), whichever comes first.

    With ``resume_from`` (a run folder, usually ``run_dir`` itself), training state is read from
    its ``checkpoint.pt`` and its saved config wins over ``cfg``; the run continues exactly as an
    uninterrupted one would (on CPU). Every ``cfg.kimg_per_interval`` the EMA generator, the
    checkpoint, a log line, a sample grid and the loss plot are written to ``run_dir``, in that
    order, so a killed run loses at most one interval and never logs one twice. Under torchrun
    every rank calls this with the same arguments; rank 0 writes the files.
    """
    run = TrainingRun(run_dir, dataclasses.asdict(cfg), resume_from=resume_from, device=device)
    cfg = TrainConfig.from_dict(run.config)
    random.seed(cfg.seed)  # style mixing draws from Python's generator
    np.random.seed(cfg.seed)
    trainer = Trainer(cfg, dataset, run_dir, run.device)
    interval = max(int(cfg.kimg_per_interval * 1000), cfg.batch)
    run.train(trainer, total=int(kimg * 1000), interval=interval, unit="img", x_key="kimg",
              plot_keys=("loss_", "r1_", "pl_"), postfix=("loss_G", "loss_D"), desc="train stylegan",
              progress=progress, max_seconds=None if minutes is None else minutes * 60)
    return trainer
