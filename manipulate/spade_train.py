"""Training the SPADE synthesizer (:mod:`manipulate.spade`) and its concatenation baseline.

Each step takes a batch of faces with their label maps (a packed labelled face set,
:class:`manipulate.labels.LabelledFaceDataset`), encodes each face's style (VAE: ``z`` drawn from
the encoder's ``N(mu, exp(logvar))``), draws the face from its own map and style, then:

1. updates the multi-scale discriminator (hinge loss, averaged over its scales) on real and
   drawn faces, each concatenated with the one-hot map;
2. updates generator and style encoder together against the updated discriminator: hinge
   adversarial loss, discriminator feature matching (weight 10, averaged over scales), VGG
   perceptual loss (weight 10; L1 on relu1_1 ... relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1 as in
   the paper) and the KL term of the style (weight 0.05, per image).

As in the paper: Adam with betas (0, 0.9), learning rates 1e-4 (G and E) and 4e-4 (D), spectral
norm in G, E and D. The paper's perceptual loss runs on VGG19; no VGG19 weights are reachable
offline, so VGG16 (the same ImageNet network family, :mod:`ganbrush_core.backbones`) stands in,
with the same layer names and weights; it runs under bf16 autocast (``vgg_bf16``, on by
default), which halves its cost on this CPU (AVX512-BF16). One generator forward serves both updates (D sees it
detached); the paper's code draws a second one for D.

Runs are driven by :class:`ganbrush_core.training.TrainingRun`: a run folder with
``config.json``, ``checkpoint.pt`` (resumable, bit-exact on CPU), ``synthesizer.safetensors``
(:func:`manipulate.spade.load_synthesizer`; written every interval), ``log.jsonl``,
``samples_<step>.png`` and ``losses.png``. Sample grids hold one column per fixed sample face and
five rows: its colourised label map, the real face, its reconstruction from its own style ``mu``
and two samples of the same map with fixed random styles; ``sample_recon_l1`` (mean absolute
difference of the reconstructions, images in [-1, 1], eval mode) joins the log. ``minutes``
gives a run a wall-clock budget (SPADE and the baseline compared at equal training time).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ganbrush_core.devices import resolve_device
from ganbrush_core.gan_losses import (
    PERCEPTUAL_LAYERS,
    GanLoss,
    PerceptualLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from ganbrush_core.training import ResumableBatches, Sample, Trainable, TrainError, TrainingRun
from ganbrush_core.weights import config_from_dict
from manipulate.labels import PALETTE, LabelledFaceDataset, one_hot, read_labelled_faces
from manipulate.spade import (
    GeneratorKind,
    MultiscaleDiscriminator,
    NormKind,
    Synthesizer,
    SynthesizerConfig,
    kl_divergence,
    reparameterize,
    save_synthesizer,
)

SYNTHESIZER_FILE = "synthesizer.safetensors"
SAMPLE_COUNT = 8  # faces (columns) in each interval's sample grid
SAMPLE_STYLES = 2  # random-style rows of the grid
SAMPLE_SEED = 1234  # their styles: fixed, so grids of successive intervals compare
#: The paper's perceptual weights on relu1_1 ... relu5_1 (PERCEPTUAL_LAYERS; VGG19's there).
VGG_LAYER_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


@dataclass
class SpadeTrainConfig:
    """Hyper-parameters of a run (saved as ``config.json``; a resumed run keeps its own).
    ``resolution`` ``None`` takes the data's. Loss weights and optimiser settings are the paper's."""

    generator: GeneratorKind = GeneratorKind.SPADE
    resolution: int | None = None
    channels: int = 32
    max_channels: int = 256
    z_dim: int = 64
    norm: NormKind = NormKind.BATCH
    spade_hidden: int = 64
    encoder_channels: int = 32
    disc_channels: int = 64
    disc_layers: int = 4
    num_d: int = 2
    batch: int = 8
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gan_loss: GanLoss = GanLoss.HINGE
    fm_weight: float = 10.0
    vgg_weight: float = 10.0
    kl_weight: float = 0.05
    vgg_bf16: bool = True  # the VGG loss network under bf16 autocast: half its time on an AVX512-BF16 CPU
    xflip: bool = True
    steps_per_interval: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator, self.norm = GeneratorKind(self.generator), NormKind(self.norm)
        self.gan_loss = GanLoss(self.gan_loss)
        self.betas = tuple(self.betas)
        if self.batch < 1 or self.steps_per_interval < 1:
            raise TrainError(f"batch ({self.batch}) and steps_per_interval ({self.steps_per_interval}) must be >= 1")

    def synthesizer_config(self) -> SynthesizerConfig:
        if self.resolution is None:
            raise TrainError("the training resolution is not known yet (it comes from the data)")
        return SynthesizerConfig(kind=self.generator, resolution=self.resolution, channels=self.channels,
                                 max_channels=self.max_channels, z_dim=self.z_dim, norm=self.norm,
                                 spade_hidden=self.spade_hidden, encoder_channels=self.encoder_channels)

    def to_dict(self) -> dict:
        return {**asdict(self), "generator": self.generator.value, "norm": self.norm.value,
                "gan_loss": self.gan_loss.value}

    @classmethod
    def from_dict(cls, d: dict) -> SpadeTrainConfig:
        return config_from_dict(cls, d, "SPADE training config")


# "tiny": tests and smoke runs. "cpu64": 64 px on CPU, batch 8, one thread per run: SPADE ~1.5 s
# and the baseline ~1.0 s per step with the two runs sharing two cores (VGG ~0.3 s of it); files
# of 7.0 MB (SPADE) and 5.0 MB (baseline) in fp16, 10.3 MB for SPADE at 128 px.
PRESETS: dict[str, dict] = {
    "tiny": dict(channels=4, max_channels=16, z_dim=8, spade_hidden=8, encoder_channels=4, disc_channels=4,
                 disc_layers=3, batch=2, steps_per_interval=2),
    "cpu64": dict(channels=16, max_channels=256, z_dim=64, spade_hidden=32, encoder_channels=16, disc_channels=32,
                  batch=8, steps_per_interval=500),
}


def _palette_images(labels: torch.Tensor) -> torch.Tensor:
    """Label maps ``[N, H, W]`` as their colour-coded images ``[N, 3, H, W]`` in [-1, 1]."""
    palette = torch.from_numpy(PALETTE).float() / 127.5 - 1
    return palette[labels.long().cpu()].permute(0, 3, 1, 2)


class SpadeTrainer(Trainable):
    """Synthesizer (generator + style encoder), discriminator, optimisers and data; :func:`train`
    runs it."""

    def __init__(self, cfg: SpadeTrainConfig, dataset: LabelledFaceDataset, device: str | torch.device = "cpu"
                 ) -> None:
        from ganbrush_core.backbones import VGG16Features

        self.cfg, self.device = cfg, resolve_device(device)
        if len(dataset) < cfg.batch:
            raise TrainError(f"the labelled face set has {len(dataset)} faces, fewer than one batch of {cfg.batch}")
        vgg = VGG16Features()  # loaded before seeding: fixed weights, no random draws
        torch.manual_seed(cfg.seed)
        self.model = Synthesizer(cfg.synthesizer_config()).to(self.device).train()
        self.D = MultiscaleDiscriminator(self.model.cfg.num_classes, cfg.disc_channels, cfg.disc_layers,
                                         cfg.num_d).to(self.device).train()
        self.perceptual = PerceptualLoss(vgg.to(self.device), PERCEPTUAL_LAYERS, VGG_LAYER_WEIGHTS)
        self.opt_G = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.step = 0
        self.history: list[dict] = []
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, shuffle=True, drop_last=True,
                                             num_workers=0, generator=torch.Generator().manual_seed(cfg.seed))
        self.data = ResumableBatches(loader)
        self.samples = self._fixed_samples(dataset)

    def _fixed_samples(self, dataset: LabelledFaceDataset) -> dict[str, torch.Tensor]:
        """The first faces of the set, unflipped, and fixed random styles for them."""
        images, labels = read_labelled_faces(dataset.path)
        n = min(SAMPLE_COUNT, len(images))
        image = torch.from_numpy(images[:n].copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.randn(SAMPLE_STYLES, n, self.cfg.z_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        return {"image": image, "labels": torch.from_numpy(labels[:n].copy()).long(), "z": z}

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": round(self.images_seen / 1000, 3)}

    # -------------------------------------------------------------------------------------------
    def _d_loss(self, image: torch.Tensor, fake: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        real_out, fake_out = self.D(image, onehot), self.D(fake.detach(), onehot)
        losses = [discriminator_loss(r, f, self.cfg.gan_loss) for (r, _), (f, _) in zip(real_out, fake_out)]
        return sum(losses) / len(losses)

    def _perceptual(self, fake: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        # VGG features need little precision; bf16 halves the cost of the step's largest part.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.vgg_bf16):
            return self.perceptual((fake + 1) / 2, (image + 1) / 2)

    def train_step(self) -> dict[str, float]:
        """One D update then one G + E update on a fresh batch; returns the losses."""
        cfg = self.cfg
        batch = next(self.data)
        image, onehot = batch["image"].to(self.device), one_hot(batch["labels"].to(self.device))
        mu, logvar = self.model.style_encoder(image)
        fake = self.model(onehot, reparameterize(mu, logvar))

        loss_D = self._d_loss(image, fake, onehot)
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()

        self.D.requires_grad_(False)  # G's step must not leave gradients in D
        with torch.no_grad():
            real_features = [features for _, features in self.D(image, onehot)]
        fake_out = self.D(fake, onehot)
        num_d = len(fake_out)
        terms = {
            "G_adv": sum(generator_adversarial_loss(logits, cfg.gan_loss) for logits, _ in fake_out) / num_d,
            "G_fm": cfg.fm_weight * sum(feature_matching_loss(f, r) for (_, f), r in zip(fake_out, real_features))
            / num_d,
            "G_vgg": cfg.vgg_weight * self._perceptual(fake, image),
            "G_kl": cfg.kl_weight * kl_divergence(mu, logvar),
        }
        loss_G = sum(terms.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        self.step += 1
        return {"loss_D": loss_D.item(), "loss_G": loss_G.item(), **{k: v.item() for k, v in terms.items()}}

    @torch.no_grad()
    def sample(self) -> Sample:
        """The fixed sample faces through the current synthesizer in eval mode (see the module
        docstring for the grid's rows); ``sample_recon_l1`` for the log."""
        s = {k: v.to(self.device) for k, v in self.samples.items()}
        onehot = one_hot(s["labels"])
        self.model.eval()
        recon = self.model(onehot, self.model.encode_style(s["image"]))
        styled = [self.model(onehot, z) for z in s["z"]]
        self.model.train()
        rows = [_palette_images(s["labels"]), s["image"].cpu(), recon.cpu(), *(x.cpu() for x in styled)]
        l1 = float((recon - s["image"]).abs().mean())
        return Sample(torch.cat(rows), ncols=len(s["image"]), metrics={"sample_recon_l1": l1})

    # -------------------------------------------------------------------------------------------
    # The run loop's hooks (ganbrush_core.training.Trainable).
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("model", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        self.data.load_state_dict(state["data"])

    def save_weights(self, run_dir: Path) -> None:
        meta = {"step": str(self.step), "images_seen": str(self.images_seen)}
        save_synthesizer(self.model, run_dir / SYNTHESIZER_FILE, metadata=meta, force=True)


def train(cfg: SpadeTrainConfig, data_dir: str | os.PathLike, run_dir: str | os.PathLike, steps: int,
          device: str | torch.device = "cpu", resume_from: str | os.PathLike | None = None,
          minutes: float | None = None, force: bool = False, progress: bool = True) -> SpadeTrainer:
    """Train until ``steps`` steps (counted from the run's start) are done, or ``minutes`` of
    wall time have passed in this call (the run then ends after the step past the budget, with
    its interval written).

    ``data_dir`` is a packed labelled face set (``ganbrush data labels``); its image size is the
    resolution. With ``resume_from`` (usually ``run_dir``) the run continues from its checkpoint
    with its own saved config (bit-exact on CPU). One process only: torchrun is refused.
    """
    images, _ = read_labelled_faces(data_dir)
    height, width = images.shape[1:3]
    if height != width:
        raise TrainError(f"{data_dir}: faces are {width}x{height}; SPADE trains on square faces")
    if cfg.resolution is None:
        cfg = replace(cfg, resolution=height)
    if minutes is not None and not minutes > 0:
        raise TrainError(f"minutes must be > 0, got {minutes}")
    run = TrainingRun(run_dir, cfg.to_dict(), resume_from=resume_from, force=force, device=device)
    if run.world.size > 1:
        # Its data, draws and gradients do not follow the loop's distributed pattern: the ranks
        # would train apart while rank 0 alone writes.
        raise TrainError("ganbrush train spade runs in one process; start it without torchrun")
    cfg = SpadeTrainConfig.from_dict(run.config)
    if cfg.resolution != height:
        raise TrainError(f"{data_dir}: faces are {height} px but this run trains at {cfg.resolution} px")
    trainer = SpadeTrainer(cfg, LabelledFaceDataset(data_dir, xflip=cfg.xflip), run.device)
    run.train(trainer, total=steps, interval=cfg.steps_per_interval, plot_keys=("loss_", "G_", "sample_"),
              postfix=("loss_G", "loss_D"), desc=f"train spade ({cfg.generator.value})", progress=progress,
              max_seconds=None if minutes is None else minutes * 60)
    return trainer
