"""GLCIC training with the paper's three-phase schedule, one run folder.

1. steps ``[0, phase1_steps)``: the completion network alone, MSE on the hole;
2. ``[phase1_steps, phase1_steps + phase2_steps)``: the context discriminator alone (real images
   against completed ones from the fixed network);
3. after that, jointly: D as in phase 2, then the completion network with MSE + ``alpha`` x the
   adversarial loss (paper: alpha = 0.0004).

The phase is a function of the step, so a resumed run continues in the right phase. Adadelta as in
the paper by default; ``optimizer="adam"`` (at ``lr``) for fine-tuning, e.g. the glcic-refine variant
from a trained network, whose zero-initialised last layer Adadelta's slowly growing steps barely move.
the paper. The local discriminator sees the patch centred on each hole (:func:`hole_patch_boxes`),
for real images the same box, so where the patch lies tells it nothing. Training masks are
:func:`inpainting.masks.random_mask` strokes and boxes, never the irregular evaluation masks. The
hole is filled with the training set's mean colour, measured on the data at the run's start and
saved in the config (and in the weights file).

Runs are driven by :class:`ganbrush_core.training.TrainingRun`: ``config.json``, ``checkpoint.pt``,
``glcic.safetensors`` (:func:`inpainting.load_glcic` reads it), ``log.jsonl``,
``samples_<step>.png`` and ``losses.png``, written atomically at the end of every interval. With
``workers=0`` on the CPU a resumed run continues bit-exactly as an uninterrupted one. One process
(no torchrun split here: the CPU and one-GPU runs this model needs).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganbrush_core import distributed, faces
from ganbrush_core.batch_norm import recalibrate_batch_norm
from ganbrush_core.devices import resolve_device
from ganbrush_core.gan_losses import discriminator_loss, generator_adversarial_loss
from ganbrush_core.training import ResumableBatches, Sample, Trainable, TrainError, TrainingRun
from inpainting.data import TRAIN_SPLIT, read_packed_faces
from inpainting.glcic import (
    FEATURES,
    CompletionNetwork,
    ContextDiscriminator,
    GlcicConfig,
    Prefill,
    crop_patches,
    hole_patch_boxes,
)
from inpainting.glcic_checkpoints import load_discriminator, load_glcic, save_discriminator, save_glcic
from inpainting.masks import random_mask

WEIGHTS_FILE = "glcic.safetensors"
DISCRIMINATOR_FILE = "glcic_discriminator.safetensors"  # float16, to continue training elsewhere
SAMPLE_COUNT = 8
SAMPLE_SEED = 1234
#: Batches of training faces (fixed, with their own masks) that the weights file's batch-norm
#: statistics are measured on (:func:`ganbrush_core.batch_norm.recalibrate_batch_norm`).
CALIBRATION_BATCHES = 50
CALIBRATION_SEED = 4321


class GlcicFaces(faces.FaceDataset):
    """Packed train faces: ``dataset[i]`` is ``{"image": [3, H, W] float32 in [0, 1]}``, mirrored
    with probability 1/2 when ``xflip``."""

    def __init__(self, path: str | os.PathLike, xflip: bool = True):
        read_packed_faces(path)  # train split, size a multiple of 4
        super().__init__(path, xflip=xflip, split=TRAIN_SPLIT)

    def load(self, index: int, flip: bool = False) -> dict[str, torch.Tensor]:
        image = self._array()[index]
        image = np.array(image[:, ::-1] if flip else image)
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float() / 255}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.load(index, self.draw_flip())

    def mean_color(self) -> tuple[float, float, float]:
        """The mean RGB of all images, in [0, 1] (summed in chunks: the array is memory-mapped)."""
        arr, total = self._array(), np.zeros(3)
        for i in range(0, len(arr), 1024):
            total += arr[i:i + 1024].reshape(-1, 3).sum(0, dtype=np.float64)
        return tuple(float(v) for v in total / (arr.shape[0] * arr.shape[1] * arr.shape[2] * 255))


@dataclass
class GlcicTrainConfig:
    """Hyper-parameters of a run (saved as ``config.json``; a resumed run keeps its own)."""

    channels: int = 64
    disc_channels: int = 64
    features: int = FEATURES
    local_size: int | None = None  # local discriminator patch; None: half the image side
    batch: int = 16
    phase1_steps: int = 9000  # the paper's Tc = 90000 at batch 96, scaled for 64 px faces
    phase2_steps: int = 1000
    alpha: float = 0.0004
    mask_ratio: tuple[float, float] = (0.05, 0.5)
    xflip: bool = True
    steps_per_interval: int = 500
    seed: int = 0
    mean_color: tuple[float, float, float] | None = None  # None: measured on the data at the start
    prefill: str = Prefill.MEAN.value  # "biharmonic": the refinement variant (inpainting.glcic.Prefill)
    init_weights: str | None = None  # a completion network to start from (all layers but a residual last one)
    init_discriminator: str | None = None  # a context discriminator to start from (save_discriminator's file)
    optimizer: str = "adadelta"  # the paper's; or "adam" (betas 0.5, 0.999) at lr
    lr: float = 2e-4  # Adam's learning rate (Adadelta has none)

    def __post_init__(self) -> None:
        self.mask_ratio = tuple(self.mask_ratio)
        if self.mean_color is not None:
            self.mean_color = tuple(self.mean_color)
        if self.batch < 1 or self.steps_per_interval < 1 or self.phase1_steps < 0 or self.phase2_steps < 0:
            raise TrainError("batch and steps_per_interval must be >= 1 and the phase lengths >= 0")
        if self.optimizer not in ("adadelta", "adam") or not self.lr > 0:
            raise TrainError(f"optimizer must be adadelta or adam with lr > 0, got {self.optimizer} at {self.lr}")

    def phase(self, step: int) -> int:
        """The schedule's phase (1, 2, 3) that step ``step`` (0-based) belongs to."""
        if step < self.phase1_steps:
            return 1
        return 2 if step < self.phase1_steps + self.phase2_steps else 3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GlcicTrainConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TrainError(f"unknown training config keys {sorted(unknown)}")
        return cls(**d)


# "tiny" for tests; "cpu" fits two cores at 64 px; "paper" is the published width.
PRESETS: dict[str, dict] = {
    "tiny": dict(channels=4, disc_channels=4, features=32, batch=4, phase1_steps=2, phase2_steps=2,
                 steps_per_interval=3),
    "cpu": dict(channels=32, disc_channels=32, batch=16, steps_per_interval=200),
    "paper": dict(channels=64, disc_channels=64, batch=16, steps_per_interval=500),
}


class GlcicTrainer(Trainable):
    """The completion network, the context discriminator, their optimisers and the step."""

    def __init__(self, cfg: GlcicTrainConfig, dataset: GlcicFaces, device: str | torch.device = "cpu",
                 workers: int = 0) -> None:
        if cfg.mean_color is None:
            raise TrainError("the config needs the data set's mean colour (train() measures it)")
        if len(dataset) < cfg.batch:
            raise TrainError(f"the data set has {len(dataset)} images, fewer than one batch of {cfg.batch}")
        self.cfg, self.device, self.dataset, self.workers = cfg, resolve_device(device), dataset, workers
        torch.manual_seed(cfg.seed)
        res = dataset.res
        self.local_size = cfg.local_size or res // 2
        self.G = CompletionNetwork(GlcicConfig(cfg.channels, cfg.mean_color, cfg.prefill)).to(self.device).train()
        self.D = ContextDiscriminator(res, self.local_size, cfg.disc_channels, cfg.features).to(self.device).train()
        self.opt_G, self.opt_D = (self._optimizer(net.parameters()) for net in (self.G, self.D))
        self.step = 0
        self.history: list[dict] = []
        self.mask_rng = np.random.default_rng(cfg.seed)
        self.data: ResumableBatches | None = None
        self._data_state: dict[str, Any] | None = None
        n = min(SAMPLE_COUNT, len(dataset))
        rng = np.random.default_rng(SAMPLE_SEED)
        self.samples = {"image": torch.stack([dataset.load(i)["image"] for i in range(n)]),
                        "mask": torch.stack([random_mask(res, res, rng, ratio_range=cfg.mask_ratio) for _ in range(n)])}

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch

    def log_fields(self) -> dict[str, Any]:
        return {"phase": self.cfg.phase(max(self.step - 1, 0))}

    def _start_data(self) -> None:
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        loader = distributed.sharded_loader(self.dataset, self.cfg.batch, generator, distributed.current(),
                                            num_workers=self.workers, persistent_workers=self.workers > 0)
        self.data = ResumableBatches(loader)
        if self._data_state is not None:
            self.data.load_state_dict(self._data_state)
            self._data_state = None

    def _complete(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's output and the completed image (known pixels from ``image``)."""
        out = self.G(self.G.inputs(image, mask))
        return out, out * mask + image * (1 - mask)

    def _d_step(self, image: torch.Tensor, completed: torch.Tensor, boxes: torch.Tensor) -> float:
        s = self.local_size
        real = self.D(image, crop_patches(image, boxes, s))
        fake = self.D(completed.detach(), crop_patches(completed.detach(), boxes, s))
        loss = discriminator_loss(real, fake)
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        return loss.item()

    def train_step(self) -> dict[str, float]:
        """One step of the schedule's current phase; returns its losses."""
        if self.data is None:
            self._start_data()
        image = next(self.data)["image"].to(self.device)
        n, _, h, w = image.shape
        mask = torch.stack([random_mask(h, w, self.mask_rng, ratio_range=self.cfg.mask_ratio)
                            for _ in range(n)]).to(self.device)
        boxes = hole_patch_boxes(mask, self.local_size)
        phase = self.cfg.phase(self.step)
        stats: dict[str, float] = {}
        if phase == 2:
            with torch.no_grad():
                out, completed = self._complete(image, mask)
            stats["loss_D"] = self._d_step(image, completed, boxes)
            stats["G_mse"] = F.mse_loss(out * mask, image * mask).item()
        else:
            out, completed = self._complete(image, mask)
            mse = F.mse_loss(out * mask, image * mask)  # the paper's weighted MSE: hole pixels only
            loss = mse
            if phase == 3:
                stats["loss_D"] = self._d_step(image, completed, boxes)
                self.D.requires_grad_(False)  # G's step must not leave gradients in D
                adv = generator_adversarial_loss(self.D(completed, crop_patches(completed, boxes, self.local_size)))
                self.D.requires_grad_(True)
                loss = mse + self.cfg.alpha * adv
                stats["G_adv"] = adv.item()
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_G.step()
            stats["G_mse"], stats["loss_G"] = mse.item(), loss.item()
        self.step += 1
        return stats

    @torch.no_grad()
    def sample(self) -> Sample:
        """The fixed sample batch (eval mode): rows masked input, output, completed, ground truth."""
        image, mask = self.samples["image"].to(self.device), self.samples["mask"].to(self.device)
        self.G.eval()
        out, completed = self._complete(image, mask)
        self.G.train()
        mse = (completed - image).square().mean()
        metrics = {"sample_psnr": float(10 * torch.log10(1 / mse.clamp_min(1e-10)))}
        grid = torch.cat([image * (1 - mask) + mask, out, completed, image])
        return Sample(grid.cpu() * 2 - 1, ncols=image.shape[0], metrics=metrics)

    def state_dict(self) -> dict[str, Any]:
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                 "opt_D": self.opt_D.state_dict(), "mask_rng": json.dumps(self.mask_rng.bit_generator.state)}
        if self.data is not None:
            state["data"] = self.data.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("G", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        self.mask_rng.bit_generator.state = json.loads(state["mask_rng"])
        self.data, self._data_state = None, state.get("data")

    def start_from(self, path: str | os.PathLike) -> None:
        """Copy a completion network's weights into G (a new run's start). A residual G started
        from the paper's network keeps its zero last layer, so it starts exactly at its prefill;
        from a residual network it takes everything. The widths must match."""
        net = load_glcic(path)
        source, own = net.state_dict(), self.G.state_dict()
        last = f"blocks.{len(self.G.blocks) - 1}."
        keep = {k for k in own if self.G.cfg.residual and not net.cfg.residual and k.startswith(last)}
        wrong = [k for k in own if k not in keep and (k not in source or source[k].shape != own[k].shape)]
        if wrong:
            raise TrainError(f"{path}: not a completion network of width {self.cfg.channels} ({wrong[0]})")
        self.G.load_state_dict({k: own[k] if k in keep else source[k] for k in own})

    def start_discriminator_from(self, path: str | os.PathLike) -> None:
        """Copy a saved context discriminator's weights into D (a new run's start); its sizes
        must be this run's."""
        source = load_discriminator(path).state_dict()
        own = self.D.state_dict()
        if {k: v.shape for k, v in source.items()} != {k: v.shape for k, v in own.items()}:
            raise TrainError(f"{path}: a context discriminator of other sizes than this run's "
                             f"({self.dataset.res} px images, {self.cfg.disc_channels} channels)")
        self.D.load_state_dict(source)

    def _optimizer(self, params) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.cfg.lr, betas=(0.5, 0.999))
        return torch.optim.Adadelta(params)

    def calibration_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same :data:`CALIBRATION_BATCHES` (image, mask) training batches at every call."""
        rng = np.random.default_rng(CALIBRATION_SEED)
        n, res = self.cfg.batch, self.dataset.res
        for _ in range(CALIBRATION_BATCHES):
            index = rng.integers(len(self.dataset), size=n)
            image = torch.stack([self.dataset.load(int(i))["image"] for i in index])
            mask = torch.stack([random_mask(res, res, rng, ratio_range=self.cfg.mask_ratio) for _ in range(n)])
            yield image.to(self.device), mask.to(self.device)

    def save_weights(self, run_dir: Path) -> None:
        """The weights file holds a copy of G whose batch norms' statistics are measured anew on
        :meth:`calibration_batches` (the running averages lag behind G); training goes on with
        G and its own statistics untouched, so a resumed run is unaffected."""
        G = recalibrate_batch_norm(copy.deepcopy(self.G), self.calibration_batches(),
                                   lambda net, batch: net(net.inputs(*batch)))
        save_glcic(G, run_dir / WEIGHTS_FILE, force=True,
                   metadata={"step": str(self.step), "images_seen": str(self.images_seen),
                             "batch_norm": f"recalibrated on {CALIBRATION_BATCHES} batches"})
        save_discriminator(self.D, run_dir / DISCRIMINATOR_FILE, force=True)


def train_glcic(cfg: GlcicTrainConfig, dataset: GlcicFaces, run_dir: str | os.PathLike, steps: int,
                device: str = "cpu", resume_from: str | os.PathLike | None = None, workers: int = 0,
                progress: bool = True) -> GlcicTrainer:
    """Train until ``steps`` steps (counted from the run's start). With ``resume_from`` (a run
    folder) its checkpoint and saved config win over ``cfg``. A new run measures the data's mean
    colour when ``cfg.mean_color`` is None."""
    if cfg.mean_color is None and resume_from is None:
        cfg = dataclasses.replace(cfg, mean_color=dataset.mean_color())
    run = TrainingRun(run_dir, cfg.to_dict(), resume_from=resume_from, device=device)
    if run.resumed:
        cfg = GlcicTrainConfig.from_dict(run.config)
    trainer = GlcicTrainer(cfg, dataset, run.device, workers)
    if cfg.init_weights is not None and not run.resumed:
        trainer.start_from(cfg.init_weights)
    if cfg.init_discriminator is not None and not run.resumed:
        trainer.start_discriminator_from(cfg.init_discriminator)
    run.train(trainer, total=steps, interval=cfg.steps_per_interval, plot_keys=("loss_", "G_", "sample_"),
              postfix=("G_mse", "loss_D"), desc="train glcic", progress=progress)
    return trainer
