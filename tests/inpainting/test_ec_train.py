"""EdgeConnect training on a tiny packed folder of real faces: the data reader, the three stages,
checkpoints that load through load_edgeconnect, resume, a SIGKILL mid-run, and the CLI."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.faces import FaceDataError
from ganbrush_core.paths import data_root
from inpainting import load_edgeconnect, load_generator
from inpainting.cli import register_train
from inpainting.data import EdgeConnectFaces, read_packed_faces
from inpainting.edges import canny_edges, to_gray
from inpainting.networks import edge_inputs, inpaint_inputs
from inpainting.train import PRESETS, Stage, TrainConfig, Trainer, TrainError, read_checkpoint, train

REPO = Path(__file__).resolve().parents[2]  # PYTHONPATH of the subprocess runs
SHARED = data_root()
RES = 32
TINY = {**PRESETS["tiny"], "steps_per_interval": 5}


def _pack(out: Path, count: int = 12, split: str = "train") -> Path:
    """A packed folder as `ganbrush data faces` writes it: CelebA train faces 000001.. cropped
    around the face and resized to RES px."""
    src = SHARED / "faces" / "celeba-10k"
    if not src.is_dir():
        pytest.skip(f"shared face data not found at {SHARED}")
    images = []
    for i in range(1, count + 1):
        with Image.open(src / f"{i:06d}.jpg") as im:
            face = im.convert("RGB").crop((4, 24, 85, 105)).resize((RES, RES), Image.Resampling.LANCZOS)
            images.append(np.asarray(face))
    out.mkdir(parents=True)
    np.save(out / "images.npy", np.stack(images))
    (out / "meta.json").write_text(json.dumps({"format": "ganbrush-faces", "res": RES, "split": split}))
    return out


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory):
    return _pack(tmp_path_factory.mktemp("data") / "faces32")


@pytest.fixture(scope="module")
def faces(faces_dir):
    return EdgeConnectFaces(faces_dir)


@pytest.fixture(scope="module")
def edge_run(faces, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "edge"
    trainer = train(TrainConfig(stage=Stage.EDGE, **TINY), faces, run, steps=10, progress=False)
    return run, trainer


# ---------------------------------------------------------------------------------------------
# Data


def test_reader_refuses_what_it_cannot_train_on(tmp_path, faces_dir):
    with pytest.raises(FaceDataError, match="ganbrush data faces"):
        read_packed_faces(tmp_path)
    held_out = _pack(tmp_path / "heldout", count=2, split="heldout")
    with pytest.raises(FaceDataError, match="'heldout' split.*train split only"):
        EdgeConnectFaces(held_out)
    odd = tmp_path / "odd"
    odd.mkdir()
    np.save(odd / "images.npy", np.zeros((2, 30, 30, 3), np.uint8))
    (odd / "meta.json").write_text(json.dumps({"res": 30, "split": "train"}))
    with pytest.raises(FaceDataError, match="multiple of 4"):
        read_packed_faces(odd)
    (odd / "meta.json").write_text(json.dumps({"res": 32, "split": "train"}))
    with pytest.raises(FaceDataError, match=r"uint8 \[N, 32, 32, 3\]"):
        read_packed_faces(odd)
    images, meta = read_packed_faces(faces_dir)
    assert isinstance(images, np.memmap) and images.shape == (12, RES, RES, 3) and meta["res"] == RES


def test_samples_are_images_with_their_canny_edges_flips_included(faces, faces_dir):
    raw = np.load(faces_dir / "images.npy")
    for flip in (False, True):
        item = faces.load(3, flip=flip)
        expected = raw[3][:, ::-1] if flip else raw[3]
        assert torch.equal((item["image"] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected.copy()))
        # The same edges the inference path (inpainting.edges, sigma 2) finds on that image.
        gray = to_gray(item["image"][None])
        torch.testing.assert_close(item["gray"][None], gray, atol=1e-6, rtol=0)
        assert torch.equal(item["edges"][None], canny_edges(gray, sigma=2.0))
        assert 0 < item["edges"].mean() < 0.5
    torch.manual_seed(0)
    flips = {bool(torch.equal(faces[0]["image"], faces.load(0, flip=True)["image"])) for _ in range(16)}
    assert flips == {True, False}


# ---------------------------------------------------------------------------------------------
# Training


def test_edge_stage_trains_writes_and_loads(edge_run):
    run, trainer = edge_run
    assert trainer.step == 10 and len(trainer.history) == 2
    for name in ("config.json", "checkpoint.pt", "edge_generator.safetensors", "log.jsonl", "losses.png",
                 "samples_00000005.png", "samples_00000010.png"):
        assert (run / name).is_file(), name
    assert not (run / "inpaint_generator.safetensors").exists()
    h0, h1 = trainer.history
    for key in ("loss_D", "loss_G", "G_adv", "G_fm", "sample_edge_precision", "sample_edge_recall", "data_ms"):
        assert np.isfinite(h0[key]) and np.isfinite(h1[key]), key
    for h in (h0, h1):  # the logged total is the sum of the logged terms (interval means of each)
        assert h["loss_G"] == pytest.approx(h["G_adv"] + h["G_fm"], rel=1e-6)
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [5, 10]

    G1 = load_generator(run / "edge_generator.safetensors")
    s = trainer.samples
    x = edge_inputs(s["gray"], s["edges"], s["mask"])
    trainer.G1.eval()
    with torch.no_grad():
        torch.testing.assert_close(G1(x), trainer.G1(x))
    trainer.G1.train()
    assert G1.cfg.channels == TINY["channels"] and G1.cfg.residual_blocks == TINY["residual_blocks"]


def test_resume_continues_the_step_count(edge_run, faces, tmp_path):
    src, _ = edge_run
    run = tmp_path / "edge"
    run.mkdir()
    for name in ("checkpoint.pt", "edge_generator.safetensors", "log.jsonl", "config.json"):
        (run / name).write_bytes((src / name).read_bytes())
    with pytest.raises(TrainError, match="--resume"):
        train(TrainConfig(stage=Stage.EDGE, **TINY), faces, run, steps=15, progress=False)
    # The saved config wins over the one passed (here a different architecture).
    resumed = train(TrainConfig(stage=Stage.EDGE, channels=4), faces, run, steps=15, progress=False,
                    resume_from=run)
    assert resumed.step == 15 and resumed.cfg.channels == TINY["channels"] and len(resumed.history) == 3
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [5, 10, 15]
    assert int(read_checkpoint(run)["step"]) == 15
    # Networks, optimisers, data position, masks and random states all resume: the same losses and
    # weights as a run that never stopped.
    straight = train(TrainConfig(stage=Stage.EDGE, **TINY), faces, tmp_path / "straight", steps=15, progress=False)
    timing = ("images_per_s", "data_ms")
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == \
        [{k: v for k, v in h.items() if k not in timing} for h in straight.history]
    for (k, v), v2 in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(v, v2), k
    with pytest.raises(TrainError, match="nothing to resume"):
        train(TrainConfig(**TINY), faces, tmp_path / "empty", steps=5, resume_from=tmp_path / "empty")


def test_inpaint_stages_and_load_edgeconnect(edge_run, faces, tmp_path):
    edge_dir, _ = edge_run
    stage2 = train(TrainConfig(stage=Stage.INPAINT, **TINY), faces, tmp_path / "inpaint", steps=10, progress=False)
    h0, h1 = stage2.history
    for key in ("loss_D", "loss_G", "G_adv", "G_l1", "G_perceptual", "G_style", "sample_hole_l1", "sample_psnr"):
        assert np.isfinite(h0[key]) and np.isfinite(h1[key]), key
    for h in (h0, h1):
        assert h["loss_G"] == pytest.approx(h["G_adv"] + h["G_l1"] + h["G_perceptual"] + h["G_style"], rel=1e-6)
        assert 0 < h["sample_hole_l1"] < 1 and h["sample_psnr"] > 0
    assert (tmp_path / "inpaint" / "inpaint_generator.safetensors").is_file()

    with pytest.raises(TrainError, match="--edge-weights"):
        TrainConfig(stage=Stage.INPAINT_PREDICTED)
    g1_file = tmp_path / "g1.safetensors"
    g1_file.write_bytes((edge_dir / "edge_generator.safetensors").read_bytes())
    cfg = TrainConfig(stage=Stage.INPAINT_PREDICTED, edge_weights=str(g1_file),
                      init_inpaint=str(tmp_path / "inpaint" / "inpaint_generator.safetensors"), **TINY)
    stage3 = train(cfg, faces, tmp_path / "predicted", steps=5, progress=False)
    assert not any(p.requires_grad for p in stage3.G1.parameters()) and not stage3.G1.training
    model = load_edgeconnect(tmp_path / "predicted" / "edge_generator.safetensors",
                             tmp_path / "predicted" / "inpaint_generator.safetensors")
    s = stage3.samples
    with torch.no_grad():
        predicted = model.edge_generator(edge_inputs(s["gray"], s["edges"], s["mask"]))
        torch.testing.assert_close(predicted, stage3.G1(edge_inputs(s["gray"], s["edges"], s["mask"])))
        edges = predicted * s["mask"] + s["edges"] * (1 - s["mask"])
        x = inpaint_inputs(s["image"], edges, s["mask"])
        stage3.G2.eval()
        torch.testing.assert_close(model.inpaint_generator(x), stage3.G2(x))
    # Stage 3 starts from stage 2's G2, not from scratch.
    fresh = Trainer(cfg, faces, tmp_path / "unused")
    start = load_generator(tmp_path / "inpaint" / "inpaint_generator.safetensors").state_dict()
    assert all(torch.equal(v, start[k]) for k, v in fresh.G2.state_dict().items())
    # A stage-3 run resumes from its own folder, even once the G1 file it started from is gone.
    g1_file.unlink()
    resumed = train(cfg, faces, tmp_path / "predicted", steps=10, progress=False, resume_from=tmp_path / "predicted")
    assert resumed.step == 10 and resumed.cfg.edge_weights == str(g1_file)
    assert all(torch.equal(v, stage3.G1.state_dict()[k]) for k, v in resumed.G1.state_dict().items())


_KILL_SCRIPT = """
import sys
from inpainting.data import EdgeConnectFaces
from inpainting.train import PRESETS, TrainConfig, train
cfg = TrainConfig(stage="edge", **{**PRESETS["tiny"], "steps_per_interval": 3})
train(cfg, EdgeConnectFaces(sys.argv[1]), sys.argv[2], steps=100000, progress=False)
"""


def test_sigkill_mid_run_leaves_a_checkpoint_that_resumes(faces_dir, faces, tmp_path):
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(faces_dir), str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.jsonl").is_file() or len((run / "log.jsonl").read_text().splitlines()) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the training subprocess wrote no second interval"
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere inside a later interval, maybe while writing
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = read_checkpoint(run)
    step = int(state["step"])
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert step >= 6 and step % 3 == 0 and logged[-1] in (step - 3, step)  # checkpoint first, then log
    load_generator(run / "edge_generator.safetensors")  # readable, whatever the moment of the kill
    # An interrupted write leaves at most a hidden temporary (ganbrush's own, or the one
    # safetensors writes before its rename), never a truncated output.
    outputs = {".pt", ".safetensors", ".jsonl", ".json", ".png"}
    visible = [p.name for p in run.iterdir() if not p.name.startswith(".")]
    assert all(Path(name).suffix in outputs for name in visible), visible
    resumed = train(TrainConfig(), faces, run, steps=step + 3, progress=False, resume_from=run)
    assert resumed.step == step + 3
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # the resume cleared them
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == list(
        range(3, step + 4, 3))


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbrush")
    sub = parser.add_subparsers(dest="command", required=True)
    train_sub = sub.add_parser("train").add_subparsers(dest="train_command", required=True)
    register_train(train_sub)
    return parser


def test_cli_trains_and_refuses_held_out_data(faces_dir, tmp_path, capsys):
    parser = _parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["train", "edgeconnect", "--help"])
    assert e.value.code == 0 and "--stage" in capsys.readouterr().out
    out = tmp_path / "run"
    args = parser.parse_args(["train", "edgeconnect", "--data", str(faces_dir), "--out", str(out), "--stage", "edge",
                              "--steps", "2", "--preset", "tiny", "--interval", "2", "--device", "cpu"])
    assert args.func(args) == 0
    assert "edge_generator.safetensors" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["steps_per_interval"] == 2
    held_out = _pack(tmp_path / "heldout", count=2, split="heldout")
    args = parser.parse_args(["train", "edgeconnect", "--data", str(held_out), "--out", str(tmp_path / "r2"),
                              "--stage", "edge", "--steps", "2", "--device", "cpu"])
    with pytest.raises(FaceDataError, match="train split only"):
        args.func(args)
    args = parser.parse_args(["train", "edgeconnect", "--data", str(faces_dir), "--out", str(tmp_path / "r3"),
                              "--stage", "inpaint-predicted", "--steps", "2", "--device", "cpu"])
    with pytest.raises(TrainError, match="--edge-weights"):
        args.func(args)


def test_two_ranks_train_as_one_process_and_resume_as_one(faces_dir, tmp_path):
    """Same seed and global batch (4): 2 edge-stage steps on 2 gloo ranks (each its rows of the
    global batch and of its masks) give one process's networks; the 2-rank run then resumes as
    one process and matches 4 steps of one process. No flips: data loading draws per rank."""
    from ddp_worker import assert_same, networks, run_ranks

    def compared(trainer_or_state) -> dict[str, torch.Tensor]:
        # Biases of convolutions right before an InstanceNorm have a zero gradient in exact
        # arithmetic: Adam's steps on them follow rounding noise, which any two summation orders
        # (one process or two) draw differently. They do not change any output.
        state = trainer_or_state if isinstance(trainer_or_state, dict) else networks(trainer_or_state)
        return {k: v for k, v in state.items() if k not in noise_only}

    cfg = TrainConfig(stage=Stage.EDGE, **PRESETS["tiny"])
    faces = EdgeConnectFaces(faces_dir, xflip=False)
    one = tmp_path / "one"
    first = train(cfg, faces, one, steps=2, progress=False)
    noise_only = {f"G.{seq}.{a}.bias" for seq, m in first.G.named_modules() if isinstance(m, torch.nn.Sequential)
                  for (a, conv), (_, norm) in zip(m.named_children(), list(m.named_children())[1:])
                  if isinstance(norm, torch.nn.InstanceNorm2d) and getattr(conv, "bias", None) is not None}
    assert len(noise_only) == 5  # 3 encoder and 2 decoder convolutions
    expected = compared(first)
    rank0, rank1 = run_ranks("edgeconnect", tmp_path / "two", 2, faces_dir)
    assert_same(rank0, rank1, rtol=0, atol=0)  # the ranks hold one model
    assert_same(compared(rank0), expected)
    resumed = train(cfg, faces, tmp_path / "two", steps=4, progress=False, resume_from=tmp_path / "two")
    straight = train(cfg, faces, one, steps=4, progress=False, resume_from=one)
    assert resumed.images_seen == 16
    assert_same(compared(resumed), compared(straight))
