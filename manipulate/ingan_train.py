"""Training InGAN (:mod:`manipulate.ingan`) on one image, and its weight file.

Each step draws a random output shape ``T`` (per-axis scale factors, log-uniform in a range that
grows from the identity to ``[min_scale, max_scale]`` over the first ``ramp`` of the run: the
scale-space curriculum, so G first learns to redraw the image and only then to stretch it), then

1. updates the multi-scale patch discriminator with LSGAN on the real image vs ``G(x, T)``
   (the mean over its scales);
2. updates G with ``w_adv`` * LSGAN + ``w_rec`` * ``|G(x, shape(x)) - x|_1`` (reconstruction)
   + ``w_cycle`` * ``|G(G(x, T), shape(x)) - x|_1`` (the inverse transform brings it back).

One image, batch 1; Adam with betas (0.5, 0.999). Runs go through
:class:`ganbrush_core.training.TrainingRun` (progress bar, ``log.jsonl``, ``losses.png`` and a
sample grid of shapes, padded white to a common size, at every interval).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ganbrush_core.gan_losses import GanLoss, discriminator_loss, generator_adversarial_loss
from ganbrush_core.training import Sample, Trainable, TrainingRun
from ganbrush_core.weights import WeightsFileError, config_from_dict, read_safetensors, save_safetensors
from manipulate.ingan import MIN_SIDE, Discriminator, Generator, InGANConfig, Shape

FORMAT = "ganbrush-ingan"
VERSION = "1"
GENERATOR_FILE = "ingan.safetensors"
#: Shapes (height factor, width factor) of each interval's sample grid, after the input itself.
SAMPLE_FACTORS: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.0, 1.5), (1.0, 0.7), (1.3, 1.0), (0.6, 1.8))


class InGANFileError(ValueError):
    """An InGAN weight file cannot be read; ``str()`` is one line."""


@dataclass
class InGANTrainConfig:
    """Hyper-parameters of one per-image run (part of the cache key; saved with the weights)."""

    net: InGANConfig = field(default_factory=InGANConfig)
    lr_g: float = 5e-4
    lr_d: float = 5e-4
    w_adv: float = 1.0
    # The paper's reconstruction weight is of this order (0.1); 1.0 kept G a blurred copy within
    # 400 steps, and an adversarial term alone (higher D rate) put GAN noise on faces (measured).
    w_rec: float = 0.2
    w_cycle: float = 0.2
    min_scale: float = 0.5
    max_scale: float = 2.0
    ramp: float = 0.5  # fraction of the steps over which the shape range grows to its full width
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "net": self.net.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InGANTrainConfig:
        """Rebuild a stored config; unknown keys (a newer version's file) are refused."""
        cfg = config_from_dict(cls, d, "InGAN training config")
        return replace(cfg, net=config_from_dict(InGANConfig, dict(cfg.net), "InGAN network config"))


def scaled_shape(shape: Shape, factors: tuple[float, float]) -> Shape:
    """``shape`` (h, w) times (height factor, width factor), rounded, at least :data:`MIN_SIDE`."""
    return (max(MIN_SIDE, round(shape[0] * factors[0])), max(MIN_SIDE, round(shape[1] * factors[1])))


def pad_to(images: list[torch.Tensor], fill: float = 1.0) -> torch.Tensor:
    """``[1, C, h_i, w_i]`` images padded (bottom and right, ``fill``: white) to one ``[N, C, H, W]``."""
    h = max(i.shape[-2] for i in images)
    w = max(i.shape[-1] for i in images)
    return torch.cat([F.pad(i, (0, w - i.shape[-1], 0, h - i.shape[-2]), value=fill) for i in images])


class InGANTrainer(Trainable):
    """G and D for one image ``x`` ``[1, 3, h, w]`` in [-1, 1] (see the module docstring)."""

    def __init__(self, cfg: InGANTrainConfig, image: torch.Tensor, steps: int, device: torch.device,
                 on_step: Callable[[int, int], None] | None = None) -> None:
        if image.ndim != 4 or image.shape[:2] != (1, 3) or min(image.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"InGAN trains on one RGB image [1, 3, h, w] of at least {MIN_SIDE} px per side, "
                             f"got {list(image.shape)}")
        self.cfg, self.total, self.device, self.on_step = cfg, steps, device, on_step
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.net).to(device).train()
        self.D = Discriminator(cfg.net).to(device).train()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        self.x = image.to(device)
        self.shape: Shape = (image.shape[-2], image.shape[-1])
        self.step = 0
        self.history: list[dict] = []

    def scale_range(self) -> tuple[float, float]:
        """The current per-axis range of scale factors (the curriculum)."""
        p = min(1.0, self.step / max(1.0, self.cfg.ramp * self.total))
        return self.cfg.min_scale ** p, self.cfg.max_scale ** p

    def random_shape(self) -> Shape:
        lo, hi = self.scale_range()
        u = torch.rand(2)
        factors = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return scaled_shape(self.shape, (float(factors[0]), float(factors[1])))

    def _d_mean(self, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
        return sum(discriminator_loss(r, f, GanLoss.LSGAN) for r, f in zip(real, fake)) / len(fake)

    def train_step(self) -> dict[str, float]:
        if self.on_step is not None:
            self.on_step(self.step, self.total)  # progress, and the place a cancel token stops the run
        cfg, x = self.cfg, self.x
        shape = self.random_shape()
        fake = self.G(x, shape)

        loss_D = self._d_mean(self.D(x), self.D(fake.detach()))
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()

        self.D.requires_grad_(False)  # G's step must not leave gradients in D
        fake_out = self.D(fake)
        terms = {
            "G_adv": cfg.w_adv * sum(generator_adversarial_loss(f, GanLoss.LSGAN) for f in fake_out) / len(fake_out),
            "G_rec": cfg.w_rec * (self.G(x) - x).abs().mean(),
            "G_cycle": cfg.w_cycle * (self.G(fake, self.shape) - x).abs().mean(),
        }
        loss_G = sum(terms.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        self.step += 1
        return {"loss_D": loss_D.item(), "loss_G": loss_G.item(), **{k: v.item() for k, v in terms.items()},
                "scale_hi": self.scale_range()[1]}

    @torch.no_grad()
    def sample(self) -> Sample:
        """The input, then G at :data:`SAMPLE_FACTORS`, one row; ``sample_rec_l1`` (identity
        reconstruction, mean absolute difference in [-1, 1]) joins the log."""
        self.G.eval()
        outs = [self.G(self.x, scaled_shape(self.shape, f)) for f in SAMPLE_FACTORS]
        self.G.train()
        rec = float((outs[0] - self.x).abs().mean())
        return Sample(pad_to([self.x.cpu(), *(o.cpu() for o in outs)]), ncols=len(outs) + 1,
                      metrics={"sample_rec_l1": rec})

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("G", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])

    def save_weights(self, run_dir: Path) -> None:
        save_ingan(self.G, self.x, run_dir / GENERATOR_FILE, self.cfg, {"step": self.step})


def save_ingan(G: Generator, image: torch.Tensor, path: str | os.PathLike, cfg: InGANTrainConfig,
               info: dict[str, Any] | None = None) -> Path:
    """One self-contained ``.safetensors``: G's weights (float32) and the working image it redraws
    (``image`` key, ``[1, 3, h, w]`` in [-1, 1]); the training config and ``info`` as JSON metadata."""
    tensors = {**{f"G.{k}": v for k, v in G.state_dict().items()}, "image": image}
    return save_safetensors(path, tensors, format=FORMAT, version=VERSION, config=cfg.to_dict(),
                            metadata={"info": json.dumps(info or {})})


def load_ingan(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[Generator, torch.Tensor, InGANTrainConfig, dict[str, Any]]:
    """Read :func:`save_ingan`: (G in eval mode without gradients, the working image, the config,
    the info). Another kind of file, or a damaged one, is refused with :class:`InGANFileError`."""
    try:
        wf = read_safetensors(path, FORMAT, "an InGAN model")
        cfg = InGANTrainConfig.from_dict(wf.config)
        info = json.loads(wf.metadata.get("info", "{}"))
        G = Generator(cfg.net)
        G.load_state_dict({k[2:]: v.float() for k, v in wf.tensors.items() if k.startswith("G.")})
    except (WeightsFileError, ValueError, TypeError, RuntimeError, KeyError) as e:
        raise InGANFileError(f"{path}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                             ) from None
    if "image" not in wf.tensors:
        raise InGANFileError(f"{path}: no working image in the file")
    return G.to(device).eval().requires_grad_(False), wf.tensors["image"].float().to(device), cfg, info


def train_ingan(image: torch.Tensor, run_dir: str | os.PathLike, steps: int, cfg: InGANTrainConfig | None = None,
                device: str | torch.device = "cpu", progress: bool = True, intervals: int = 2,
                on_step: Callable[[int, int], None] | None = None) -> InGANTrainer:
    """Train InGAN on ``image`` (``[1, 3, h, w]`` in [-1, 1], the working resolution) for ``steps``
    steps in the run folder ``run_dir`` (started over if it holds a run), writing
    :data:`GENERATOR_FILE`, the log, loss plot and ``intervals`` sample grids. ``on_step(step,
    total)`` is called before every step (an exception it raises ends the run)."""
    cfg = cfg or InGANTrainConfig()
    run = TrainingRun(run_dir, cfg.to_dict(), force=True, device=device)
    trainer = InGANTrainer(cfg, image, steps, run.device, on_step)
    run.train(trainer, total=steps, interval=max(1, math.ceil(steps / intervals)), log_every=max(1, steps // 40),
              plot_keys=("loss_", "G_", "sample_"), postfix=("loss_G", "loss_D"), desc="train InGAN",
              progress=progress)
    return trainer
