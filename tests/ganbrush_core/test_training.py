"""The shared training run loop on a tiny trainer: resume is bit-exact, a kill between checkpoint
and log line (or after logging past the checkpoint) never logs a step twice, refusals, outputs."""

from __future__ import annotations

import json
import random
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.training import (
    NothingToResumeError,
    ResumableBatches,
    RunExistsError,
    Sample,
    Trainable,
    TrainError,
    TrainingRun,
)


class Killed(Exception):
    """Stands in for SIGKILL at a chosen point."""


class TinyTrainer(Trainable):
    """Regression with dropout (global torch RNG), Python and NumPy noise, and a shuffled loader of
    12 items in batches of 4 (3 per epoch), so every kind of state the loop restores matters."""

    def __init__(self, lr: float = 0.05, kill_at: int | None = None, items: int = 12) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=0.5)
        x = torch.randn(items, 3)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True,
                                             drop_last=True, generator=torch.Generator().manual_seed(1))
        self.data = ResumableBatches(loader)
        self.kill_at = kill_at
        self.step = 0
        self.history = []

    def train_step(self) -> dict[str, float]:
        if self.step == self.kill_at:
            raise Killed
        x, y = next(self.data)
        jitter = random.random() * 1e-3 + float(np.random.rand()) * 1e-3
        loss = (self.net(x) - y).square().mean() + jitter
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.data.load_state_dict(state["data"])

    @torch.no_grad()
    def sample(self) -> Sample:
        w = self.net[0].weight  # [8, 3]: eight 1x3 "images", enough to check the grid file
        return Sample(torch.tanh(w)[:, :, None, None].expand(8, 3, 4, 4), ncols=4, metrics={"w_norm": w.norm().item()})


def _train(run_dir: Path, total: int, trainer: TinyTrainer | None = None, resume: bool = False,
           log_every: int | None = 1, **kwargs) -> TinyTrainer:
    random.seed(0)
    np.random.seed(0)
    trainer = trainer or TinyTrainer()
    run = TrainingRun(run_dir, {"lr": 0.1}, resume_from=run_dir if resume else None, **kwargs)
    run.train(trainer, total=total, interval=10, log_every=log_every, progress=False)
    return trainer


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _losses(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, TinyTrainer]:
    run = tmp_path_factory.mktemp("straight") / "run"
    return run, _train(run, 30)


def test_training_learns_and_logs_every_step(straight):
    run, trainer = straight
    losses = [loss for _, loss in _losses(_log(run))]
    assert [r["step"] for r in _log(run)] == list(range(1, 31))
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5])  # it really fits the line
    assert [r["step"] for r in trainer.history if "w_norm" in r] == [10, 20, 30]  # sample metrics at intervals
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 30 and json.loads(state["history"]) == _log(run)
    assert json.loads((run / "config.json").read_text()) == {"lr": 0.1}


def test_resume_mid_epoch_is_bit_exact(straight, tmp_path):
    run, full = straight
    stopped = tmp_path / "run"
    first = _train(stopped, 15)  # ends with an epoch (5 * 3 batches), mid-interval
    assert first.step == 15 and torch.load(stopped / "checkpoint.pt", weights_only=True)["step"] == 15
    _train(stopped, 17, resume=True)  # ends mid-epoch (17 = 5 * 3 + 2)
    resumed = _train(stopped, 30, resume=True)
    assert _losses(_log(stopped)) == _losses(_log(run))
    for (k, v), v2 in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(v, v2), k


def test_resume_on_changed_data_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    _train(run, 17)  # mid-epoch: 2 of 3 batches taken
    assert torch.load(run / "checkpoint.pt", weights_only=True)["data"]["batches"] == 3
    for items in (4, 16):  # fewer batches than already taken; more batches (another shuffle order)
        with pytest.raises(TrainError, match=r"data changed since the checkpoint \(\d batches per epoch now, 3 then\)"):
            _train(run, 20, TinyTrainer(items=items), resume=True)
    assert _train(run, 20, resume=True).step == 20  # the same data resumes


def test_kill_after_logging_past_the_checkpoint_logs_each_step_once(straight, tmp_path):
    run, _ = straight
    killed = tmp_path / "run"
    with pytest.raises(Killed):
        _train(killed, 30, TinyTrainer(kill_at=15))
    assert [r["step"] for r in _log(killed)] == list(range(1, 16))  # 11-15 are past the checkpoint at 10
    (killed / ".checkpoint.pt.k1lled_9.tmp.pt").write_bytes(b"half a checkpoint")  # as a SIGKILL leaves it
    _train(killed, 30, resume=True)
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")]
    assert _losses(_log(killed)) == _losses(_log(run))


def test_kill_between_checkpoint_and_log_line_does_not_log_twice(monkeypatch, tmp_path):
    straight = tmp_path / "straight"
    _train(straight, 30, log_every=None)
    killed = tmp_path / "killed"
    original = TrainingRun._end_interval

    def end_then_die(self, trainer, record, *args):
        if trainer.step == 20:  # checkpoint.pt written, then killed before the log line
            monkeypatch.setattr(type(self.folder), "append_log", lambda *a: (_ for _ in ()).throw(Killed()))
        return original(self, trainer, record, *args)

    monkeypatch.setattr(TrainingRun, "_end_interval", end_then_die)
    with pytest.raises(Killed):
        _train(killed, 30, log_every=None)
    monkeypatch.undo()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == 20
    assert [r["step"] for r in _log(killed)] == [10]
    _train(killed, 30, resume=True, log_every=None)
    assert [r["step"] for r in _log(killed)] == [10, 20, 30]
    assert _losses(_log(killed)) == _losses(_log(straight))


def test_outputs_are_pngs_with_mode_0644_and_no_temporaries(straight):
    run, _ = straight
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoint.pt", "config.json", "log.jsonl", "losses.png", "samples_00000010.png",
                     "samples_00000020.png", "samples_00000030.png"]
    for name in names:
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    for name in ("losses.png", "samples_00000030.png"):
        with Image.open(run / name) as im:
            assert im.format == "PNG"
            im.verify()
    with Image.open(run / "samples_00000030.png") as im:  # 4 x 2 tiles of 4 px with 2 px gaps
        assert im.size == (4 * 6 + 2, 2 * 6 + 2)


def test_refusals_and_force(straight, tmp_path):
    run, _ = straight
    with pytest.raises(RunExistsError, match="--resume") as e:
        TrainingRun(run, {})
    assert isinstance(e.value, FileExistsError) and isinstance(e.value, TrainError)
    with pytest.raises(NothingToResumeError, match="nothing to resume"):
        TrainingRun(tmp_path / "empty", {}, resume_from=tmp_path / "empty")
    # The saved config wins on resume; force starts over (log and history from scratch).
    assert TrainingRun(run, {"lr": 5.0}, resume_from=run).config == {"lr": 0.1}
    fresh = tmp_path / "fresh"
    _train(fresh, 10)
    _train(fresh, 5, force=True)
    assert [r["step"] for r in _log(fresh)] == [1, 2, 3, 4, 5]


def test_trainer_state_may_not_shadow_loop_keys(tmp_path):
    class Bad(TinyTrainer):
        def state_dict(self) -> dict[str, Any]:
            return {**super().state_dict(), "step": 3}

    with pytest.raises(ValueError, match="loop's keys"):
        _train(tmp_path / "bad", 10, Bad())


def test_image_positions_end_intervals_at_each_multiple(tmp_path):
    class Images(TinyTrainer):
        images_seen = 0

        def train_step(self) -> dict[str, float]:
            self.images_seen += 7
            return super().train_step()

    trainer = Images()
    run = TrainingRun(tmp_path / "img", {})
    run.train(trainer, total=100, interval=30, unit="img", progress=False)
    # Intervals end at the first step at or past 30, 60, 90 images, and at the last step.
    assert [(r["step"], r["images_seen"]) for r in trainer.history] == [(5, 35), (9, 63), (13, 91), (15, 105)]
    assert all("images_per_s" in r for r in trainer.history)
    assert (tmp_path / "img" / "samples_00000035.png").is_file()


def test_max_seconds_ends_the_run_at_the_first_step_past_the_budget(tmp_path):
    class Slow(TinyTrainer):
        def train_step(self) -> dict[str, float]:
            time.sleep(0.02)
            return super().train_step()

    run_dir = tmp_path / "timed"
    trainer = Slow()
    run = TrainingRun(run_dir, {})
    started = time.perf_counter()
    run.train(trainer, total=10_000, interval=1000, progress=False, max_seconds=0.2)
    assert time.perf_counter() - started < 5
    assert 5 <= trainer.step < 100  # 20 ms a step: stopped soon after 0.2 s, long before 10000
    # The last step's interval is written as at the end of a run: record, checkpoint, samples.
    assert [r["step"] for r in _log(run_dir)] == [trainer.step]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == trainer.step
    assert (run_dir / f"samples_{trainer.step:08d}.png").is_file()
    resumed = _train(run_dir, trainer.step + 3, Slow(), resume=True, log_every=None)
    assert resumed.step == trainer.step + 3
    with pytest.raises(ValueError, match="max_seconds"):
        TrainingRun(tmp_path / "bad", {}).train(TinyTrainer(), total=5, interval=5, max_seconds=0)


def test_packed_run_resumes_from_half_precision_files(straight, tmp_path, monkeypatch):
    """``pack_run``: float16 networks, bfloat16 optimiser state, one file per key, refused over an
    existing pack and over the size limit; ``resume_from`` the pack continues the run (the
    rounding is the only difference from the uninterrupted one)."""
    from ganbrush_core import training

    run, full = straight
    monkeypatch.setattr(training, "PACK_MIN_NUMEL", 1)  # TinyTrainer's tensors are all small
    src = tmp_path / "run"
    _train(src, 20)
    pack = tmp_path / "pack"
    files = training.pack_run(src, pack)
    assert {p.name for p in files} == {"net.pt", "opt.pt", "data.pt", "loop.pt", "config.json", "log.jsonl"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files)
    net = torch.load(pack / training.PACKED_DIR / "net.pt", weights_only=True)["net"]
    opt = torch.load(pack / training.PACKED_DIR / "opt.pt", weights_only=True)["opt"]
    assert {v.dtype for v in net.values()} == {torch.float16}
    assert {v["momentum_buffer"].dtype for v in opt["state"].values()} == {torch.bfloat16}
    with pytest.raises(FileExistsError, match="--force"):
        training.pack_run(src, pack)
    with pytest.raises(TrainError, match="over the 1e-05 MB limit"):
        training.pack_run(src, tmp_path / "too-small", max_file_mb=1e-5)

    random.seed(0)
    np.random.seed(0)
    trainer = TinyTrainer()
    TrainingRun(tmp_path / "continued", {"lr": 0.1}, resume_from=pack).train(
        trainer, total=30, interval=10, log_every=1, progress=False)
    assert trainer.step == 30 and trainer.net[0].weight.dtype == torch.float32
    continued, straight_losses = _losses(_log(tmp_path / "continued")), _losses(_log(run))
    assert [s for s, _ in continued] == [s for s, _ in straight_losses]
    np.testing.assert_allclose([v for _, v in continued], [v for _, v in straight_losses], rtol=0.05, atol=1e-3)
    with pytest.raises(RunExistsError):  # a pack is a run folder: starting over it is refused
        TrainingRun(pack, {"lr": 0.1})
