"""SPADE training on a tiny labelled face set: a few steps of both generators, the run folder,
bit-exact resume, the wall-clock budget, and `ganbrush train spade`."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.training import RunExistsError, TrainError
from manipulate.cli import register_train
from manipulate.labels import NUM_CLASSES, PALETTE, one_hot
from manipulate.spade import load_synthesizer
from manipulate.spade_train import PRESETS, SYNTHESIZER_FILE, SpadeTrainConfig, train

RES = 32
TINY = PRESETS["tiny"]


def _blob_faces(out: Path, count: int = 6, res: int = RES, seed: int = 0) -> Path:
    """A packed labelled set as `ganbrush data labels` writes it: random elliptic blobs of
    classes on a background, and images painted in the class colours plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    labels = np.zeros((count, res, res), np.uint8)
    for i in range(count):
        for cls in rng.permutation(np.arange(1, NUM_CLASSES))[:6]:
            cy, cx = rng.uniform(0.2, 0.8, 2) * res
            ry, rx = rng.uniform(0.08, 0.3, 2) * res
            labels[i][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = cls
    images = np.clip(PALETTE[labels].astype(float) + rng.normal(0, 20, (count, res, res, 3)), 0, 255)
    out.mkdir(parents=True)
    np.save(out / "images.npy", images.astype(np.uint8))
    np.save(out / "labels.npy", labels)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _blob_faces(tmp_path_factory.mktemp("data") / "labels32")


@pytest.fixture(scope="module")
def spade_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "spade"
    return run, train(SpadeTrainConfig(**TINY), data, run, steps=4, progress=False)


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in ("images_per_s", "steps_per_s")} for h in history]


def test_a_few_steps_write_a_run_that_loads(spade_run):
    run, trainer = spade_run
    assert trainer.step == 4 and trainer.images_seen == 4 * TINY["batch"] and len(trainer.history) == 2
    for name in ("config.json", "checkpoint.pt", SYNTHESIZER_FILE, "log.jsonl", "losses.png",
                 "samples_00000002.png", "samples_00000004.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["resolution"] == RES and config["generator"] == "spade" and config["gan_loss"] == "hinge"
    for h in trainer.history:
        for key in ("loss_D", "loss_G", "G_adv", "G_fm", "G_vgg", "G_kl", "sample_recon_l1"):
            assert np.isfinite(h[key]), key
        assert h["loss_G"] == pytest.approx(h["G_adv"] + h["G_fm"] + h["G_vgg"] + h["G_kl"], rel=1e-5)
        assert 0 < h["sample_recon_l1"] < 2
    with Image.open(run / "samples_00000004.png") as im:  # 6 faces x 5 rows of 32 px tiles, 2 px gaps
        assert im.size == (6 * (RES + 2) + 2, 5 * (RES + 2) + 2)

    model = load_synthesizer(run / SYNTHESIZER_FILE)
    assert model.cfg == trainer.model.cfg and model.cfg.resolution == RES
    s = trainer.samples
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(one_hot(s["labels"]), trainer.model.encode_style(s["image"]))
        got = model(one_hot(s["labels"]), model.encode_style(s["image"]))
    trainer.model.train()
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)  # fp16 storage


def test_resume_is_bit_exact(spade_run, data, tmp_path):
    _, straight = spade_run
    run = tmp_path / "stopped"
    train(SpadeTrainConfig(**TINY), data, run, steps=2, progress=False)
    with pytest.raises(RunExistsError, match="--resume"):
        train(SpadeTrainConfig(**TINY), data, run, steps=4, progress=False)
    # The saved config wins over the one passed (here another generator).
    resumed = train(SpadeTrainConfig(generator="concat"), data, run, steps=4, progress=False, resume_from=run)
    assert resumed.cfg.generator.value == "spade" and resumed.step == 4
    assert _without_timing(resumed.history) == _without_timing(straight.history)
    for (k, v), v2 in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, v2), k
    for (k, v), v2 in zip(straight.D.state_dict().items(), resumed.D.state_dict().values()):
        assert torch.equal(v, v2), k


def test_the_baseline_trains_within_a_wall_clock_budget(data, tmp_path):
    run = tmp_path / "concat"
    trainer = train(SpadeTrainConfig(generator="concat", **{**TINY, "steps_per_interval": 1000}), data, run,
                    steps=100_000, minutes=0.5 / 60, progress=False)
    assert 1 <= trainer.step < 100_000
    assert [r["step"] for r in trainer.history] == [trainer.step]  # the last step's interval is written
    assert (run / f"samples_{trainer.step:08d}.png").is_file()
    assert load_synthesizer(run / SYNTHESIZER_FILE).cfg.kind.value == "concat"
    with pytest.raises(TrainError, match="minutes"):
        train(SpadeTrainConfig(**TINY), data, tmp_path / "r", steps=2, minutes=0, progress=False)


def test_the_data_decides_the_resolution(data, tmp_path):
    with pytest.raises(TrainError, match="trains at 64 px"):
        train(SpadeTrainConfig(resolution=64, **TINY), data, tmp_path / "r", steps=1, progress=False)
    with pytest.raises(TrainError, match="fewer than one batch"):
        train(SpadeTrainConfig(**{**TINY, "batch": 7}), data, tmp_path / "r2", steps=1, progress=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbrush")
    sub = parser.add_subparsers(dest="command", required=True)
    train_sub = sub.add_parser("train").add_subparsers(dest="train_command", required=True)
    register_train(train_sub)
    return parser


def test_cli_trains_resumes_and_refuses(data, tmp_path, capsys):
    parser = _parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["train", "spade", "--help"])
    assert e.value.code == 0 and "--minutes" in capsys.readouterr().out
    out = tmp_path / "run"
    base = ["train", "spade", "--data", str(data), "--out", str(out), "--preset", "tiny", "--device", "cpu"]
    args = parser.parse_args([*base, "--generator", "concat", "--steps", "2", "--interval", "1"])
    assert args.func(args) == 0
    assert f"{out / SYNTHESIZER_FILE} (concat, 2 steps" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["generator"] == "concat" and config["steps_per_interval"] == 1
    args = parser.parse_args([*base, "--steps", "3"])
    with pytest.raises(RunExistsError, match="--resume"):
        args.func(args)
    args = parser.parse_args([*base, "--steps", "3", "--resume", str(out)])
    assert args.func(args) == 0 and "(concat, 3 steps" in capsys.readouterr().out
    for bad in (["--minutes", "0"], ["--steps", "0"], ["--batch", "0"]):
        args = parser.parse_args([*base, "--force", *bad])
        with pytest.raises(ValueError, match=bad[0]):
            args.func(args)
