"""EdgeConnect training in the paper's three stages, each a run folder of its own.

1. ``edge``: G1 learns to complete the Canny edges of the ground truth (adversarial + feature
   matching against a 70x70 PatchGAN that sees grey image and edges).
2. ``inpaint``: G2 learns to fill holes given the ground truth's edges (L1, adversarial,
   perceptual, style).
3. ``inpaint-predicted``: G2 (usually stage 2's, ``init_inpaint``) continues with G1's edges in
   the hole (``edge_weights``, frozen in eval mode), so it learns to use what G1 really draws.

Adam with betas (0, 0.9), discriminator learning rate ``d2g_lr`` (0.1) times the generator's
(1e-4); each step updates D first, then G against the updated D (the official code steps D and G
from one forward pass; the difference is one D update of lag). Training masks are
:func:`inpainting.masks.random_mask` strokes and boxes, so the irregular evaluation masks stay
unseen.

Runs are driven by :class:`ganbrush_core.training.TrainingRun`. A run folder holds
``config.json``, ``checkpoint.pt`` (all training state, read back with
``torch.load(weights_only=True)``), the generators as ``edge_generator.safetensors`` /
``inpaint_generator.safetensors`` (:func:`inpainting.load_edgeconnect` reads them; a stage-3
folder holds both), ``log.jsonl``, ``samples_<step>.png`` and ``losses.png``. Everything is
written at the end of every interval, atomically, checkpoint before log line, so a killed run
loses at most one interval, never leaves a half-written file and never logs an interval twice.

Under ``torchrun`` (see :mod:`ganbrush_core.distributed`) ``cfg.batch`` is the global batch, split
over the ranks; gradients are averaged before each Adam step, each rank's training masks are its
rows of the masks one process would draw for the global batch, and the hole L1 is normalised by
the hole fraction of the global batch, so N ranks train as one process does (up to rounding and
the random flips of the data).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganbrush_core import distributed
from ganbrush_core.devices import resolve_device
from ganbrush_core.training import ResumableBatches, RunFolder, Sample, Trainable, TrainError, TrainingRun
from inpainting.checkpoints import load_generator, save_generator
from inpainting.edges import DEFAULT_SIGMA
from inpainting.losses import (
    GanLoss,
    PerceptualLoss,
    StyleLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    hole_l1_loss,
)
from inpainting.masks import random_mask
from inpainting.networks import (
    EdgeConnectGenerator,
    EdgeGenerator,
    GeneratorKind,
    InpaintGenerator,
    PatchDiscriminator,
    edge_inputs,
    inpaint_inputs,
)

EDGE_FILE = "edge_generator.safetensors"
INPAINT_FILE = "inpaint_generator.safetensors"
SAMPLE_COUNT = 8  # images in each interval's sample grid
SAMPLE_SEED = 1234  # masks of the sample grid: fixed, so grids of successive intervals compare
EDGE_THRESHOLD = 0.5  # G1 output above this counts as an edge in the sample metrics


class Stage(str, enum.Enum):
    """Which network a run trains (the paper's training stages)."""

    EDGE = "edge"
    INPAINT = "inpaint"
    INPAINT_PREDICTED = "inpaint-predicted"

    @property
    def trains_edges(self) -> bool:
        return self is Stage.EDGE


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (saved as ``config.json``; a resumed run keeps its own).
    Defaults are the paper's and the official configuration's."""

    stage: Stage = Stage.EDGE
    channels: int = 64
    residual_blocks: int = 8
    disc_channels: int = 64
    batch: int = 8
    lr: float = 1e-4
    d2g_lr: float = 0.1
    betas: tuple[float, float] = (0.0, 0.9)
    gan_loss: GanLoss = GanLoss.NSGAN
    fm_weight: float = 10.0
    l1_weight: float = 1.0
    adv_weight: float = 0.1  # G2's adversarial weight (G1's is 1)
    content_weight: float = 0.1
    style_weight: float = 250.0
    sigma: float = DEFAULT_SIGMA
    mask_ratio: tuple[float, float] = (0.05, 0.6)
    xflip: bool = True
    steps_per_interval: int = 1000
    seed: int = 0
    mixed_precision: bool = True  # bf16 autocast on CUDA; ignored on CPU
    edge_weights: str | None = None  # stage 3: G1 file (required)
    init_inpaint: str | None = None  # stage 3: G2 file to start from (stage 2's result)

    def __post_init__(self) -> None:
        self.stage, self.gan_loss = Stage(self.stage), GanLoss(self.gan_loss)
        self.betas, self.mask_ratio = tuple(self.betas), tuple(self.mask_ratio)
        if self.batch < 1 or self.steps_per_interval < 1:
            raise TrainError(f"batch ({self.batch}) and steps_per_interval ({self.steps_per_interval}) must be >= 1")
        if self.stage is Stage.INPAINT_PREDICTED and not self.edge_weights:
            raise TrainError("stage inpaint-predicted needs G1: pass --edge-weights RUN/edge_generator.safetensors")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "stage": self.stage.value, "gan_loss": self.gan_loss.value}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TrainError(f"unknown training config keys {sorted(unknown)}")
        return cls(**d)


# Named presets. "tiny" is for tests and smoke runs; "cpu" fits two CPU cores at 64 px; "paper"
# is the published architecture (64 channels, 8 residual blocks, batch 8).
PRESETS: dict[str, dict] = {
    "tiny": dict(channels=8, residual_blocks=1, disc_channels=8, batch=4, steps_per_interval=10),
    "cpu": dict(channels=32, residual_blocks=4, disc_channels=32, batch=8, steps_per_interval=200),
    "paper": dict(channels=64, residual_blocks=8, disc_channels=64, batch=8, steps_per_interval=1000),
}


class Trainer(Trainable):
    """One stage's networks, optimisers and step; :func:`train` runs it in a run folder."""

    def __init__(self, cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike,
                 device: str | torch.device = "cpu", workers: int = 0) -> None:
        self.cfg, self.run_dir, self.device = cfg, Path(run_dir), resolve_device(device)
        self.world = distributed.current()
        self.world.split_batch(cfg.batch)  # refused before anything is built
        torch.manual_seed(cfg.seed)
        self.G1: EdgeConnectGenerator | None = None
        self.G2: EdgeConnectGenerator | None = None
        if cfg.stage is Stage.EDGE:
            self.G1 = EdgeGenerator(cfg.channels, cfg.residual_blocks).to(self.device).train()
            self.G = self.G1
            d_in = 2  # grey image + edge map
        else:
            if cfg.stage is Stage.INPAINT_PREDICTED:
                self.G1 = self._load_kind(cfg.edge_weights, GeneratorKind.EDGE).eval().requires_grad_(False)
            if cfg.init_inpaint:
                self.G2 = self._load_kind(cfg.init_inpaint, GeneratorKind.INPAINT).train()
            else:
                self.G2 = InpaintGenerator(cfg.channels, cfg.residual_blocks).to(self.device).train()
            self.G = self.G2
            d_in = 3  # RGB
        self.D = PatchDiscriminator(d_in, cfg.disc_channels, use_sigmoid=False).to(self.device).train()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * cfg.d2g_lr, betas=cfg.betas)
        self.perceptual = self.style = None
        if not cfg.stage.trains_edges:
            from ganbrush_core.backbones import VGG16Features

            vgg = VGG16Features().to(self.device)
            self.perceptual, self.style = PerceptualLoss(vgg), StyleLoss(vgg)

        self.step = 0
        self.history: list[dict] = []
        self.mask_rng = np.random.default_rng(cfg.seed)
        self.dataset, self.workers = dataset, workers
        if len(dataset) < cfg.batch:
            raise TrainError(f"the data set has {len(dataset)} images, fewer than one batch of {cfg.batch}")
        self.data: ResumableBatches | None = None
        self._data_state: dict[str, Any] | None = None  # a resumed data position, applied at the first step
        self.samples = self._fixed_samples(dataset)

    def _load_kind(self, path: str, kind: GeneratorKind) -> EdgeConnectGenerator:
        net = load_generator(path, self.device)
        if net.kind is not kind:
            raise TrainError(f"{path} holds the {net.kind.value} generator; expected the {kind.value} one")
        return net

    def _fixed_samples(self, dataset: torch.utils.data.Dataset) -> dict[str, torch.Tensor]:
        n = min(SAMPLE_COUNT, len(dataset))
        loader = getattr(dataset, "load", None)
        items = [loader(i) if loader is not None else dataset[i] for i in range(n)]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        rng = np.random.default_rng(SAMPLE_SEED)
        h, w = batch["image"].shape[-2:]
        batch["mask"] = torch.stack([random_mask(h, w, rng, ratio_range=self.cfg.mask_ratio) for _ in range(n)])
        return batch

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch

    def _start_data(self) -> None:
        # Seeded with the step: a run resumed from a checkpoint without a data position (older
        # ones) draws a fresh order instead of replaying the first batches.
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        loader = distributed.sharded_loader(
            self.dataset, self.cfg.batch, generator, self.world, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0)
        self.data = ResumableBatches(loader)
        if self._data_state is not None:
            self.data.load_state_dict(self._data_state)
            self._data_state = None

    def _autocast(self):
        enabled = self.cfg.mixed_precision and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _masks(self, n: int, h: int, w: int) -> torch.Tensor:
        """Masks for this rank's ``n`` rows: its rows of the global batch's masks, all drawn on
        every rank so the mask generator stays the same everywhere (and as in one process)."""
        total = n * self.world.size
        masks = [random_mask(h, w, self.mask_rng, ratio_range=self.cfg.mask_ratio) for _ in range(total)]
        return self.world.rows(torch.stack(masks)).to(self.device)

    def _composite_edges(self, gray: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """G2's edge input: true edges (stage 2), or G1's prediction in the hole (stage 3)."""
        if self.cfg.stage is Stage.INPAINT:
            return edges
        with torch.no_grad(), self._autocast():
            predicted = self.G1(edge_inputs(gray, edges, mask)).float()
        return predicted * mask + edges * (1 - mask)

    # -------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One D update then one G update on a fresh batch; returns the losses."""
        if self.data is None:
            self._start_data()
        t0 = time.perf_counter()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in next(self.data).items()}
        n, _, h, w = batch["image"].shape
        mask = self._masks(n, h, w)
        data_s = time.perf_counter() - t0
        stats = self._edge_step(batch, mask) if self.cfg.stage.trains_edges else self._inpaint_step(batch, mask)
        self.step += 1
        stats["data_ms"] = data_s * 1000
        return stats

    def _update(self, loss_D: torch.Tensor, loss_G_fn) -> tuple[float, dict[str, torch.Tensor]]:
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        distributed.average_gradients(self.D.parameters())
        self.opt_D.step()
        self.D.requires_grad_(False)  # G's step must not leave gradients in D
        with self._autocast():
            terms = loss_G_fn()
        loss_G = sum(terms.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        distributed.average_gradients(self.G.parameters())
        self.opt_G.step()
        self.D.requires_grad_(True)
        return loss_G.item(), terms

    def _edge_step(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, float]:
        cfg, gray, edges = self.cfg, batch["gray"], batch["edges"]
        with self._autocast():
            predicted = self.G1(edge_inputs(gray, edges, mask))
            real_logits, real_features = self.D(torch.cat((gray, edges), dim=1))
            fake_logits, _ = self.D(torch.cat((gray, predicted.detach()), dim=1))
        loss_D = discriminator_loss(real_logits, fake_logits, cfg.gan_loss)
        real_features = [f.detach() for f in real_features]

        def generator_terms() -> dict[str, torch.Tensor]:
            logits, features = self.D(torch.cat((gray, predicted), dim=1))
            return {"G_adv": generator_adversarial_loss(logits, cfg.gan_loss),
                    "G_fm": cfg.fm_weight * feature_matching_loss(features, real_features)}

        loss_G, terms = self._update(loss_D, generator_terms)
        return {"loss_D": loss_D.item(), "loss_G": loss_G, **{k: v.item() for k, v in terms.items()}}

    def _inpaint_step(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, float]:
        cfg, image = self.cfg, batch["image"]
        edges = self._composite_edges(batch["gray"], batch["edges"], mask)
        with self._autocast():
            output = self.G2(inpaint_inputs(image, edges, mask))
            real_logits, _ = self.D(image)
            fake_logits, _ = self.D(output.detach())
        loss_D = discriminator_loss(real_logits, fake_logits, cfg.gan_loss)

        def generator_terms() -> dict[str, torch.Tensor]:
            logits, _ = self.D(output)
            out = output.float()
            return {"G_adv": cfg.adv_weight * generator_adversarial_loss(logits, cfg.gan_loss),
                    "G_l1": cfg.l1_weight * hole_l1_loss(out, image, mask),
                    "G_perceptual": cfg.content_weight * self.perceptual(output, image),
                    "G_style": cfg.style_weight * self.style(output * mask, image * mask)}

        loss_G, terms = self._update(loss_D, generator_terms)
        return {"loss_D": loss_D.item(), "loss_G": loss_G, **{k: v.item() for k, v in terms.items()}}

    # -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self) -> Sample:
        """The fixed sample batch through the current generator (eval mode): a grid of ``5N``
        images, ``N`` per row (rows: masked input, edges used, output, composite, ground truth),
        and metrics for the log."""
        s = {k: v.to(self.device) for k, v in self.samples.items()}
        image, gray, edges, mask = s["image"], s["gray"], s["edges"], s["mask"]
        was_training = self.G.training
        self.G.eval()
        metrics: dict[str, float] = {}
        if self.cfg.stage.trains_edges:
            output = self.G1(edge_inputs(gray, edges, mask)).float()
            composite = output * mask + edges * (1 - mask)
            hit = (output > EDGE_THRESHOLD).float() * mask
            true = edges * mask
            metrics["sample_edge_precision"] = float((hit * true).sum() / hit.sum().clamp_min(1))
            metrics["sample_edge_recall"] = float((hit * true).sum() / true.sum().clamp_min(1))
            rows = [gray * (1 - mask) + mask, edges * (1 - mask), output, composite, edges]
        else:
            used = self._composite_edges(gray, edges, mask)
            output = self.G2(inpaint_inputs(image, used, mask)).float()
            composite = output * mask + image * (1 - mask)
            mse = (composite - image).square().mean()
            metrics["sample_hole_l1"] = float((output - image).abs().mul(mask).sum() / (3 * mask.sum()).clamp_min(1))
            metrics["sample_psnr"] = float(10 * torch.log10(1 / mse.clamp_min(1e-10)))
            rows = [image * (1 - mask) + mask, used, output, composite, image]
        self.G.train(was_training)
        grid = torch.cat([r.expand(-1, 3, -1, -1) for r in rows])
        return Sample(grid.cpu() * 2 - 1, ncols=grid.shape[0] // 5, metrics=metrics)

    # -------------------------------------------------------------------------------------------
    # The run loop's hooks (ganbrush_core.training.Trainable).
    def state_dict(self) -> dict[str, Any]:
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                 "opt_D": self.opt_D.state_dict(), "mask_rng": json.dumps(self.mask_rng.bit_generator.state)}
        if self.data is not None:
            state["data"] = self.data.state_dict()
        if self.cfg.stage is Stage.INPAINT_PREDICTED:
            state["G1"] = self.G1.state_dict()  # the frozen G1, so a resumed run needs no other file
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("G", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        if self.cfg.stage is Stage.INPAINT_PREDICTED:
            self.G1.load_state_dict(state["G1"])
        self.mask_rng.bit_generator.state = json.loads(state["mask_rng"])
        self.data, self._data_state = None, state.get("data")

    def save_weights(self, run_dir: Path) -> None:
        meta = {"step": str(self.step), "stage": self.cfg.stage.value, "images_seen": str(self.images_seen)}
        if self.G1 is not None:
            save_generator(self.G1, run_dir / EDGE_FILE, force=True, metadata=meta)
        if self.G2 is not None:
            save_generator(self.G2, run_dir / INPAINT_FILE, force=True, metadata=meta)


def read_checkpoint(run_dir: str | os.PathLike) -> dict:
    """The training state in ``run_dir/checkpoint.pt`` (``torch.load(weights_only=True)``)."""
    return RunFolder(run_dir).read_checkpoint()


def train(cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike, steps: int,
          device: str = "cpu", resume_from: str | os.PathLike | None = None, workers: int = 0,
          progress: bool = True) -> Trainer:
    """Train until ``steps`` steps (counted from the run's start) are done.

    With ``resume_from`` (a run folder, usually ``run_dir`` itself), the training state is read
    from its ``checkpoint.pt`` and its saved config wins over ``cfg``; with ``workers=0`` the run
    continues exactly as an uninterrupted one would (on CPU). Every ``cfg.steps_per_interval``
    steps the generators, ``checkpoint.pt``, a log line, a sample grid and the loss plot are
    written to ``run_dir``, in that order. Under torchrun every rank calls this with the same
    arguments; rank 0 writes the files.
    """
    run = TrainingRun(run_dir, cfg.to_dict(), resume_from=resume_from, device=device)
    if run.resumed:
        cfg = TrainConfig.from_dict(run.config)
    build_cfg = cfg
    if run.resumed and cfg.stage is Stage.INPAINT_PREDICTED:
        # Networks come from the run's own files (then the checkpoint), not from the paths it started with.
        build_cfg = dataclasses.replace(cfg, edge_weights=str(Path(resume_from) / EDGE_FILE),
                                        init_inpaint=str(Path(resume_from) / INPAINT_FILE))
    trainer = Trainer(build_cfg, dataset, run_dir, run.device, workers)
    trainer.cfg = cfg
    run.train(trainer, total=steps, interval=cfg.steps_per_interval, plot_keys=("loss_", "G_", "sample_"),
              postfix=("loss_G", "loss_D"), desc=f"train edgeconnect {cfg.stage.value}", progress=progress)
    return trainer
