"""Multi-process test runs: :func:`run_ranks` forks gloo ranks on the CPU (one thread each); each
trains one small trainer and saves its final networks to ``OUT/rank<r>.pt`` so a test can compare
the ranks with each other and with one process.

Importable from every test (pytest puts ``tests/`` on ``sys.path`` for ``conftest.py``):
:class:`ToyTrainer` and :func:`run_toy` are the toy run the tests also do in one process.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from ganbrush_core import distributed
from ganbrush_core.training import ResumableBatches, Sample, Trainable, TrainingRun

#: The tiny StyleGAN preset with an EMA that moves a lot in 2 steps (no ramp-up, 10-image half-life),
#: so a wrong image count in the EMA shows.
STYLEGAN_OVERRIDES = {"ema_rampup": None, "ema_kimg": 0.01}


class ToyTrainer(Trainable):
    """Regression on 24 shuffled points (global batch 4) with per-sample input noise from
    :func:`ganbrush_core.distributed.randn_rows` and BatchNorm-free layers, following the
    distributed pattern of :mod:`ganbrush_core.training`."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.world = distributed.current()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.01)
        x = torch.randn(24, 3, generator=torch.Generator().manual_seed(2))
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        dataset = torch.utils.data.TensorDataset(x, y)
        self.data = ResumableBatches(distributed.sharded_loader(dataset, 4, torch.Generator().manual_seed(1)))
        self.step = 0
        self.history = []

    @property
    def images_seen(self) -> int:
        return self.step * 4

    def train_step(self) -> dict[str, float]:
        x, y = next(self.data)
        x = x + 0.01 * distributed.randn_rows(x.shape[0], 3)
        loss = (self.net(x) - y).square().mean()
        self.opt.zero_grad()
        loss.backward()
        distributed.average_gradients(self.net.parameters())
        self.opt.step()
        self.step += 1
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.data.load_state_dict(state["data"])

    def sample(self) -> Sample:
        return Sample(metrics={"w_norm": self.net[0].weight.norm().item()})


def run_toy(run_dir: Path, steps: int, resume: bool = False) -> ToyTrainer:
    run = TrainingRun(run_dir, {"toy": 1}, resume_from=run_dir if resume else None)
    trainer = ToyTrainer()
    run.train(trainer, total=steps, interval=4, log_every=1, progress=False)
    return trainer


def networks(trainer: Trainable) -> dict[str, torch.Tensor]:
    """The state of a StyleGAN or EdgeConnect trainer's networks (and the path-length mean)."""
    state = {f"{name}.{k}": v for name in ("G", "D", "G_ema") if hasattr(trainer, name)
             for k, v in getattr(trainer, name).state_dict().items()}
    if hasattr(trainer, "pl"):
        state["pl_mean"] = trainer.pl.mean
    return state


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def _stylegan(run: Path, steps: int, data: Path) -> dict[str, torch.Tensor]:
    from ganbrush_core.faces import FaceDataset
    from stylegan_ops.train import PRESETS, TrainConfig, train

    cfg = TrainConfig(**{**PRESETS["tiny"], **STYLEGAN_OVERRIDES})
    return networks(train(cfg, FaceDataset(data, xflip=False), run, kimg=steps * cfg.batch / 1000, progress=False))


def _edgeconnect(run: Path, steps: int, data: Path) -> dict[str, torch.Tensor]:
    from inpainting.data import EdgeConnectFaces
    from inpainting.train import PRESETS, Stage, TrainConfig, train

    cfg = TrainConfig(stage=Stage.EDGE, **PRESETS["tiny"])
    return networks(train(cfg, EdgeConnectFaces(data, xflip=False), run, steps=steps, progress=False))


def _work(kind: str, run: Path, steps: int, out: Path, data: Path | None) -> None:
    rank = distributed.setup("cpu").rank
    if kind == "toy":
        # Each rank names its own folder: only rank 0's may appear.
        run = run if rank == 0 else run.with_name(f"{run.name}-rank{rank}")
        state = run_toy(run, steps).net.state_dict()
    else:
        state = (_stylegan if kind == "stylegan" else _edgeconnect)(run, steps, data)
    torch.save(state, out / f"rank{rank}.pt")
    distributed.shutdown()


def _rank(local_rank: int, nproc: int, port: int, *args: Any) -> None:
    # What torchrun would set for a one-machine run.
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc),
                      LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _work(*args)


def run_ranks(kind: str, run: Path, steps: int, data: Path | None = None,
              nproc: int = 2) -> list[dict[str, torch.Tensor]]:
    """Train ``kind`` for ``steps`` steps in ``run`` as ``nproc`` gloo ranks (processes forked from
    this one, so nothing is imported again, with torchrun's environment variables); the ranks'
    final states. A rank's exception is raised here."""
    out = run.with_name(run.name + "-states")
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(_rank, args=(nproc, port, kind, run, steps, out, data), nprocs=nproc,
                                          start_method="fork")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


# By hand: torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py KIND RUN STEPS OUT [DATA]
if __name__ == "__main__":
    _work(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]),
          Path(sys.argv[5]) if len(sys.argv) > 5 else None)
