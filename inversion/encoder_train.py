"""Training the e4e-style encoder (:mod:`inversion.encoder`) against a fixed generator.

Each step sees two kinds of faces:

- **real** faces of the train split (packed by ``ganbrush data faces``): the encoder's code is
  rendered by the frozen generator and compared with the face (pixel L2 + LPIPS-AlexNet as pSp
  and e4e train, weights 1 and 0.8); a latent discriminator (e4e) scores each W+ layer's code against ``w``
  sampled from the mapping network, so codes stay in the region of W where edits work;
- **generated** faces, whose true latent is known: a latent L2 loss on ``ws`` plus pixel L2
  (style-mixed, truncation drawn from ``psi_range``, so every W+ layer is supervised).

The e4e offset regulariser (sum of the L2 norms of ``delta_i``) and progressive training (offset
``i`` switched on ``progressive_every`` steps after offset ``i-1``, from ``progressive_start``) keep
the code close to one ``w``. The identity loss of e4e (an ArcFace network) is left out: no such
network is reachable offline, and dlib's descriptor is not differentiable.

Run by :class:`ganbrush_core.training.TrainingRun`: a run folder with ``config.json``,
``checkpoint.pt`` (resumable, bit-exact on CPU), ``encoder.safetensors`` (loadable with
:func:`inversion.encoder.load_encoder`), ``log.jsonl``, ``samples_<step>.png`` (held-out faces on
top, their one-pass reconstructions below) and ``losses.png``.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganbrush_core.devices import on_device, resolve_device
from ganbrush_core.faces import FaceDataset, held_out_faces
from ganbrush_core.metrics import lpips_model
from ganbrush_core.training import ResumableBatches, Sample, Trainable, TrainError, TrainingRun
from ganbrush_core.weights import config_from_dict
from inversion.encoder import Encoder, EncoderConfig, save_encoder
from stylegan_ops.checkpoints import generator_hash, load_generator
from stylegan_ops.networks import Generator

ENCODER_FILE = "encoder.safetensors"


@dataclass
class EncoderTrainConfig:
    """Hyper-parameters of an encoder run (saved as ``config.json``; a resumed run keeps its own)."""

    generator: str = "default"
    channels: int = 128
    batch: int = 8  # real faces per step
    synthetic: int = 4  # generated faces per step
    lr: float = 3e-4
    disc_lr: float = 2e-5  # e4e's latent discriminator rate
    l2_weight: float = 1.0
    lpips_weight: float = 0.8
    lpips_net: str = "alex"  # pSp and e4e train with LPIPS-AlexNet (a fifth of VGG's cost here)
    latent_weight: float = 1.0
    offset_weight: float = 2e-4
    adv_weight: float = 0.1
    r1_gamma: float = 10.0
    progressive_start: int = 300
    progressive_every: int = 100
    psi_min: float = 0.5
    mixing_prob: float = 0.5
    steps_per_interval: int = 200
    sample_faces: int = 8
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderTrainConfig:
        return config_from_dict(cls, d, "encoder training config")


PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": dict(channels=16, batch=2, synthetic=2, steps_per_interval=2, progressive_start=1, progressive_every=1,
                 sample_faces=2),
}


class LatentDiscriminator(nn.Module):
    """e4e's discriminator on single codes ``w [N, w_dim]`` -> logits ``[N]``."""

    def __init__(self, w_dim: int, layers: int = 4) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(layers - 1):
            blocks += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        blocks.append(nn.Linear(w_dim, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w).squeeze(1)


def active_offsets(cfg: EncoderTrainConfig, step: int, num_ws: int) -> int:
    """How many W+ layers have their own code at ``step`` (1 = one shared ``w``)."""
    if step < cfg.progressive_start:
        return 1
    return min(num_ws, 2 + (step - cfg.progressive_start) // max(cfg.progressive_every, 1))


class EncoderTrainer(Trainable):
    """Encoder, latent discriminator, optimisers and data; :func:`train_encoder` runs it."""

    def __init__(self, cfg: EncoderTrainConfig, G: Generator, dataset: torch.utils.data.Dataset,
                 device: str | torch.device = "cpu", sample_faces: torch.Tensor | None = None) -> None:
        self.cfg, self.device = cfg, resolve_device(device)
        res = getattr(dataset, "res", G.img_resolution)
        if res != G.img_resolution:
            raise ValueError(f"the face data is {res} px but the generator draws {G.img_resolution} px; "
                             f"pack faces with `ganbrush data faces --res {G.img_resolution}`")
        # Built (on first use, drawing random initial weights) before seeding: a run's random
        # stream must not depend on whether LPIPS was already cached in this process.
        self.lpips = lpips_model(cfg.lpips_net, device=self.device)  # type: ignore[arg-type]
        self.lpips_vgg = lpips_model("vgg", device=self.device)  # held-out score, as the benchmarks measure
        torch.manual_seed(cfg.seed)
        self.G = on_device(G, self.device).eval().requires_grad_(False)
        self.E = Encoder(EncoderConfig.for_generator(G, channels=cfg.channels)).to(self.device)
        self.E.w_avg.copy_(G.w_avg)
        self.E.generator_hash = generator_hash(G)
        self.E.train()
        self.D = LatentDiscriminator(G.w_dim).to(self.device).train()
        trainable = [p for n, p in self.E.named_parameters() if not n.startswith("backbone.")]
        self.opt_E = torch.optim.Adam(trainable, lr=cfg.lr)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.disc_lr)
        self.step = 0
        self.images_seen = 0
        self.history: list[dict] = []
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, shuffle=True, drop_last=True,
                                             num_workers=0, generator=torch.Generator().manual_seed(cfg.seed))
        if len(loader) == 0:
            raise ValueError(f"the face data has {len(dataset)} images, fewer than one batch of {cfg.batch}")
        self.data = ResumableBatches(loader)
        self.sample_faces = sample_faces

    # ---------------------------------------------------------------------------------------
    def _generated(self, n: int) -> torch.Tensor:
        """True ``ws`` of ``n`` generated faces: truncation in [psi_min, 1], style mixing."""
        z = torch.randn(n, self.G.z_dim, device=self.device)
        psi = torch.empty(n, 1, 1, device=self.device).uniform_(self.cfg.psi_min, 1.0)
        ws = self.G.w_avg.lerp(self.G.mapping(z), psi)
        if random.random() < self.cfg.mixing_prob:
            cut = random.randint(1, self.G.num_ws - 1)
            ws2 = self.G.w_avg.lerp(self.G.mapping(torch.randn_like(z)), psi)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
        return ws

    def _discriminator_step(self, fake_ws: torch.Tensor) -> dict[str, float]:
        """Non-saturating loss on mapped ``w`` (real) vs encoded codes (fake), R1 on the reals."""
        cfg = self.cfg
        with torch.no_grad():
            real = self.G.mapping(torch.randn(fake_ws.shape[0], self.G.z_dim, device=self.device))[:, 0]
        real.requires_grad_(True)
        real_logits = self.D(real)
        fake_logits = self.D(fake_ws.detach().reshape(-1, fake_ws.shape[-1]))
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.square().sum(1).mean()
        self.opt_D.zero_grad(set_to_none=True)
        (loss + cfg.r1_gamma / 2 * r1).backward()
        self.opt_D.step()
        return {"loss_D": loss.item(), "r1_penalty": r1.item()}

    def train_step(self) -> dict[str, float]:
        cfg, G, E = self.cfg, self.G, self.E
        E.active.fill_(active_offsets(cfg, self.step, G.num_ws))
        real = next(self.data).to(self.device)
        with torch.no_grad():
            true_ws = self._generated(cfg.synthetic)
            synthetic = G.synthesis(true_ws, noise_mode="const")

        ws = E(torch.cat([real, synthetic]))
        ws_real, ws_syn = ws[: len(real)], ws[len(real):]
        images = G.synthesis(ws, noise_mode="const")
        recon_real, recon_syn = images[: len(real)], images[len(real):]
        stats: dict[str, float] = {}
        l2 = F.mse_loss(recon_real, real)
        lp = self.lpips(recon_real, real).mean()
        latent = F.mse_loss(ws_syn, true_ws)
        l2_syn = F.mse_loss(recon_syn, synthetic)
        offsets = E.offsets(ws).norm(dim=2).sum(1).mean()
        self.D.requires_grad_(False)
        adv = F.softplus(-self.D(ws_real.reshape(-1, ws_real.shape[-1]))).mean()
        self.D.requires_grad_(True)
        loss = (cfg.l2_weight * (l2 + l2_syn) + cfg.lpips_weight * lp + cfg.latent_weight * latent
                + cfg.offset_weight * offsets + cfg.adv_weight * adv)
        self.opt_E.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_E.step()
        stats.update(loss_E=loss.item(), loss_l2=l2.item(), loss_lpips=lp.item(), loss_latent=latent.item(),
                     loss_l2_generated=l2_syn.item(), loss_adv=adv.item(), offsets=offsets.item(),
                     active=float(E.active))
        if cfg.adv_weight > 0:
            stats.update(self._discriminator_step(ws_real))
        self.step += 1
        self.images_seen += len(real)
        return stats

    # ---------------------------------------------------------------------------------------
    # The run loop's hooks.
    def state_dict(self) -> dict[str, Any]:
        return {"E": self.E.trainable_state(), "D": self.D.state_dict(), "opt_E": self.opt_E.state_dict(),
                "opt_D": self.opt_D.state_dict(), "images_seen": self.images_seen, "data": self.data.state_dict(),
                "generator_hash": generator_hash(self.G)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["generator_hash"] != generator_hash(self.G):
            raise ValueError(f"this run trained an encoder for generator {state['generator_hash']}, not "
                             f"{generator_hash(self.G)}; resume it with the same --generator")
        self.E.load_state_dict(state["E"], strict=False)
        self.D.load_state_dict(state["D"])
        self.opt_E.load_state_dict(state["opt_E"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.images_seen = int(state["images_seen"])
        self.data.load_state_dict(state["data"])

    def save_weights(self, run_dir: Path) -> None:
        active = int(self.E.active)
        save_encoder(self.E, run_dir / ENCODER_FILE, self.G, force=True,
                     metadata={"step": str(self.step), "images_seen": str(self.images_seen),
                               "active_offsets": str(active)})

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": round(self.images_seen / 1000, 3)}

    @torch.no_grad()
    def sample(self) -> Sample | None:
        """Held-out faces (never trained on) above their one-pass reconstructions; their mean
        LPIPS joins the log as ``heldout_lpips``."""
        if self.sample_faces is None:
            return None
        faces = self.sample_faces.to(self.device)
        self.E.eval()
        recon = self.G.synthesis(self.E(faces), noise_mode="const")
        self.E.train()
        lp = float(self.lpips_vgg(recon, faces).mean())
        return Sample(torch.cat([faces, recon]).cpu(), ncols=len(faces), metrics={"heldout_lpips": lp})


def train_encoder(cfg: EncoderTrainConfig, data: str | os.PathLike, run_dir: str | os.PathLike, steps: int,
                  device: str | torch.device = "cpu", resume_from: str | os.PathLike | None = None,
                  progress: bool = True, force: bool = False) -> EncoderTrainer:
    """Train until ``steps`` steps (counted from the run's start) are done; see the module doc.

    ``data`` is a train-split folder from ``ganbrush data faces --res R`` at the generator's
    resolution. With ``resume_from`` (usually ``run_dir``) the run continues from its checkpoint
    with its own saved config.
    """
    run = TrainingRun(run_dir, cfg.to_dict(), resume_from=resume_from, force=force, device=device)
    if run.world.size > 1:
        # Its data, draws and gradients do not follow the loop's distributed pattern yet: the
        # ranks would train apart while rank 0 alone writes.
        raise TrainError("ganbrush train encoder runs in one process; start it without torchrun")
    cfg = EncoderTrainConfig.from_dict(run.config)
    random.seed(cfg.seed)  # style mixing draws from Python's generator
    np.random.seed(cfg.seed)
    G = load_generator(cfg.generator, device=run.device)
    dataset = FaceDataset(data, xflip=True, split="train")
    faces = held_out_faces(cfg.sample_faces, G.img_resolution) if cfg.sample_faces > 0 else None
    trainer = EncoderTrainer(cfg, G, dataset, run.device, sample_faces=faces)
    run.train(trainer, total=steps, interval=cfg.steps_per_interval, x_key="step",
              plot_keys=("loss_", "heldout_", "offsets", "r1_"), postfix=("loss_lpips", "heldout_lpips"),
              desc="train encoder", progress=progress)
    return trainer
