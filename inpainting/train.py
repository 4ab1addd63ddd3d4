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

A run folder holds ``config.json``, ``checkpoint.pt`` (all training state, read back with
``torch.load(weights_only=True)``), the generators as ``edge_generator.safetensors`` /
``inpaint_generator.safetensors`` (:func:`inpainting.load_edgeconnect` reads them; a stage-3
folder holds both), ``log.jsonl``, ``samples_<step>.png`` and ``losses.png``. Everything is
written at the end of every interval to temporary names and renamed, so a killed run loses at
most one interval and never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

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

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
EDGE_FILE = "edge_generator.safetensors"
INPAINT_FILE = "inpaint_generator.safetensors"
SAMPLE_COUNT = 8  # images in each interval's sample grid
SAMPLE_SEED = 1234  # masks of the sample grid: fixed, so grids of successive intervals compare
PLOT_COLUMNS = 4  # panels per row of losses.png
EDGE_THRESHOLD = 0.5  # G1 output above this counts as an edge in the sample metrics


class Stage(str, enum.Enum):
    """Which network a run trains (the paper's training stages)."""

    EDGE = "edge"
    INPAINT = "inpaint"
    INPAINT_PREDICTED = "inpaint-predicted"

    @property
    def trains_edges(self) -> bool:
        return self is Stage.EDGE


class TrainError(ValueError):
    """A run cannot start or resume as asked; ``str()`` is one line saying what to do."""


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


def _infinite(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


class Trainer:
    """One stage's networks, optimisers and step; :func:`train` runs it and writes the run folder."""

    def __init__(self, cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike,
                 device: str | torch.device = "cpu", workers: int = 0) -> None:
        self.cfg, self.run_dir, self.device = cfg, Path(run_dir), torch.device(device)
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
            from inpainting.vgg import VGG16Features

            vgg = VGG16Features().to(self.device)
            self.perceptual, self.style = PerceptualLoss(vgg), StyleLoss(vgg)

        self.step = 0
        self.history: list[dict] = []
        self.mask_rng = np.random.default_rng(cfg.seed)
        self.dataset, self.workers = dataset, workers
        if len(dataset) < cfg.batch:
            raise TrainError(f"the data set has {len(dataset)} images, fewer than one batch of {cfg.batch}")
        self.data: Iterator[dict[str, torch.Tensor]] | None = None
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

    def _start_data(self) -> None:
        # Seeded with the step, so a resumed run draws a fresh order instead of replaying the first batches.
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.cfg.batch, shuffle=True, drop_last=True, num_workers=self.workers,
            generator=generator, pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0)
        self.data = _infinite(loader)

    def _autocast(self):
        enabled = self.cfg.mixed_precision and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _masks(self, n: int, h: int, w: int) -> torch.Tensor:
        masks = [random_mask(h, w, self.mask_rng, ratio_range=self.cfg.mask_ratio) for _ in range(n)]
        return torch.stack(masks).to(self.device)

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
        self.opt_D.step()
        self.D.requires_grad_(False)  # G's step must not leave gradients in D
        with self._autocast():
            terms = loss_G_fn()
        loss_G = sum(terms.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
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
    def sample(self) -> tuple[torch.Tensor, dict[str, float]]:
        """The fixed sample batch through the current generator (eval mode): a grid ``[5N, 3, H, W]``
        in [0, 1] (rows: masked input, edges used, output, composite, ground truth) and metrics."""
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
        return grid.cpu(), metrics

    # -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                 "opt_D": self.opt_D.state_dict(), "step": self.step, "history": json.dumps(self.history),
                 "torch_rng": torch.get_rng_state(), "mask_rng": json.dumps(self.mask_rng.bit_generator.state),
                 "config": json.dumps(self.cfg.to_dict())}
        if self.cfg.stage is Stage.INPAINT_PREDICTED:
            state["G1"] = self.G1.state_dict()  # the frozen G1, so a resumed run needs no other file
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("G", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        if self.cfg.stage is Stage.INPAINT_PREDICTED:
            self.G1.load_state_dict(state["G1"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        self.mask_rng.bit_generator.state = json.loads(state["mask_rng"])
        self.data = None  # restarted with the step's seed

    def save_checkpoint(self) -> None:
        """Generators then ``checkpoint.pt``, each written to a temporary name and renamed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"step": str(self.step), "stage": self.cfg.stage.value, "images_seen": str(self.step * self.cfg.batch)}
        if self.G1 is not None:
            save_generator(self.G1, self.run_dir / EDGE_FILE, force=True, metadata=meta)
        if self.G2 is not None:
            save_generator(self.G2, self.run_dir / INPAINT_FILE, force=True, metadata=meta)
        tmp = self.run_dir / f".{CHECKPOINT_FILE}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT_FILE)  # atomic: a kill never leaves half a checkpoint

    def end_interval(self, stats: dict[str, float], images_per_s: float) -> None:
        """Log line, checkpoint, sample grid and loss plot for the interval that just ended. The
        checkpoint (holding the history) is written before the log line: a run killed in between
        gets its log rewritten from the checkpoint on resume, so no interval is logged twice."""
        grid, metrics = self.sample()
        record = {"step": self.step, "images_seen": self.step * self.cfg.batch,
                  "images_per_s": round(images_per_s, 2), **stats, **metrics}
        self.history.append(record)
        self.save_checkpoint()
        with open(self.run_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        save_grid(grid, self.run_dir / f"samples_{self.step:08d}.png", ncols=grid.shape[0] // 5)
        plot_losses(self.history, self.run_dir / "losses.png")

    def rewrite_log(self) -> None:
        """``log.jsonl`` from the history in the checkpoint (after a resume)."""
        tmp = self.run_dir / f".{LOG_FILE}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        os.replace(tmp, self.run_dir / LOG_FILE)


def _atomic_image(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def save_grid(images: torch.Tensor, path: Path, ncols: int, pad: int = 2) -> Path:
    """Tile ``[N, 3, H, W]`` images in [0, 1], row by row, ``ncols`` per row, into a PNG."""
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    n, h, w, _ = arr.shape
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = arr[i]
    _atomic_image(Image.fromarray(canvas), path)
    return path


def plot_losses(history: list[dict], path: Path) -> None:
    """One panel per logged loss and sample metric against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[-1] if k.startswith(("loss_", "G_", "sample_"))]
    ncols = min(len(keys), PLOT_COLUMNS)
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        pts = [(h["step"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def read_checkpoint(run_dir: str | os.PathLike) -> dict:
    """The training state in ``run_dir/checkpoint.pt`` (``torch.load(weights_only=True)``)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError(f"{path}: nothing to resume (start without --resume)")
    return torch.load(path, map_location="cpu", weights_only=True)


def train(cfg: TrainConfig, dataset: torch.utils.data.Dataset, run_dir: str | os.PathLike, steps: int,
          device: str = "cpu", resume_from: str | os.PathLike | None = None, workers: int = 0,
          progress: bool = True) -> Trainer:
    """Train until ``steps`` steps (counted from the run's start) are done.

    With ``resume_from`` (a run folder, usually ``run_dir`` itself), the training state is read
    from its ``checkpoint.pt`` and its saved config wins over ``cfg``. Every
    ``cfg.steps_per_interval`` steps the generators, ``checkpoint.pt``, a sample grid, the loss
    plot and a log line are written to ``run_dir``.
    """
    run_dir = Path(run_dir)
    state = None
    same_run = resume_from is not None and Path(resume_from).resolve() == run_dir.resolve()
    if (run_dir / CHECKPOINT_FILE).exists() and not same_run:
        raise TrainError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it")
    if resume_from is not None:
        state = read_checkpoint(resume_from)
        cfg = TrainConfig.from_dict(json.loads(state["config"]))
    build_cfg = cfg
    if state is not None and cfg.stage is Stage.INPAINT_PREDICTED:
        # Networks come from the run's own files (then the checkpoint), not from the paths it started with.
        build_cfg = dataclasses.replace(cfg, edge_weights=str(Path(resume_from) / EDGE_FILE),
                                        init_inpaint=str(Path(resume_from) / INPAINT_FILE))
    trainer = Trainer(build_cfg, dataset, run_dir, device, workers)
    trainer.cfg = cfg
    if state is not None:
        trainer.load_state_dict(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if state is not None:
        trainer.rewrite_log()

    bar = tqdm(total=steps, initial=min(trainer.step, steps), unit="step", disable=not progress,
               desc=f"train edgeconnect {cfg.stage.value}")
    sums: dict[str, list[float]] = {}
    t0, step0 = time.perf_counter(), trainer.step
    while trainer.step < steps:
        stats = trainer.train_step()
        for k, v in stats.items():
            sums.setdefault(k, []).append(v)
        bar.update(1)
        rate = (trainer.step - step0) * cfg.batch / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(img_s=f"{rate:.1f}", G=f"{stats['loss_G']:.3f}", D=f"{stats['loss_D']:.3f}")
        if trainer.step % cfg.steps_per_interval == 0 or trainer.step >= steps:
            means = {k: float(np.mean(v)) for k, v in sums.items() if all(math.isfinite(x) for x in v)}
            trainer.end_interval(means, rate)
            sums.clear()
    bar.close()
    return trainer
