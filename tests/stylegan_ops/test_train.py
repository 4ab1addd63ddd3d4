"""A tiny StyleGAN2 run on real faces: losses move, outputs are written, the EMA generator
loads through ``load_generator``, and a resumed run continues where the checkpoint left off."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from stylegan_ops import load_generator
from stylegan_ops.augment import adjust_color, cutout, diff_augment, translate
from stylegan_ops.faces import FaceDataset, build_face_dataset
from stylegan_ops.train import PRESETS, TrainConfig, train

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def faces16(tmp_path_factory):
    if not (SHARED / "faces").is_dir():
        pytest.skip(f"shared face data not found at {SHARED}")
    out = tmp_path_factory.mktemp("faces16")
    build_face_dataset(out, res=16, split="train", limit=32, data_root=SHARED, force=True, progress=False)
    return FaceDataset(out, xflip=True)


def test_tiny_run_trains_saves_and_resumes(faces16, tmp_path):
    cfg = dataclasses.replace(TrainConfig(**PRESETS["tiny"]), kimg_per_interval=0.16)
    run = tmp_path / "run"
    first = train(cfg, faces16, run, kimg=0.32, progress=False)
    assert first.step == 40 and len(first.history) == 2
    for name in ("config.json", "checkpoint.pt", "generator_ema.safetensors", "log.jsonl", "losses.png",
                 "samples_00000160.png", "samples_00000320.png"):
        assert (run / name).is_file(), name
    h0, h1 = first.history
    assert h0["loss_D"] != h1["loss_D"] and h0["loss_G"] != h1["loss_G"]
    assert all(k in h0 for k in ("r1_penalty", "pl_penalty", "images_per_s"))

    G = load_generator(run / "generator_ema.safetensors")
    assert G.img_resolution == 16
    with torch.no_grad():
        torch.testing.assert_close(G(first.fixed_z), first.G_ema(first.fixed_z))

    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, faces16, run, kimg=0.48, progress=False)
    resumed = train(cfg, faces16, run, kimg=0.48, progress=False, resume_from=run)
    assert resumed.step == 60 and resumed.images_seen == 480 and len(resumed.history) == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40, 60]


def test_augmentations_are_differentiable_and_change_images():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    for op in (adjust_color, translate, cutout):
        y = op(x)
        assert y.shape == x.shape and not torch.equal(y, x)
    diff_augment(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ()), x)
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(x, ("rotate",))
