"""A tiny StyleGAN2 run on real faces: outputs are written, the EMA generator loads through
``load_generator``, and a resumed run is bit-identical to an uninterrupted one."""

import dataclasses
import json

import pytest
import torch

from ganbrush_core.faces import FaceDataset, build_face_dataset
from stylegan_ops import load_generator
from stylegan_ops.train import PRESETS, TrainConfig, train


@pytest.fixture(scope="module")
def faces16(tmp_path_factory, face_data_root):
    out = tmp_path_factory.mktemp("faces16")
    build_face_dataset(out, res=16, split="train", limit=32, data_root=face_data_root, force=True, progress=False)
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
    assert all(k in h0 for k in ("loss_G", "loss_D", "r1_penalty", "pl_penalty", "images_per_s"))
    assert (h0["kimg"], h0["images_seen"], h1["kimg"]) == (0.16, 160, 0.32)

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

    # Resuming restores networks, optimisers, data position and random states: the same losses
    # and weights as a run that never stopped.
    straight = train(cfg, faces16, tmp_path / "straight", kimg=0.48, progress=False)
    losses = lambda h: [{k: v for k, v in r.items() if k != "images_per_s"} for r in h]  # noqa: E731
    assert losses(resumed.history) == losses(straight.history)
    for (k, v), v2 in zip(straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values()):
        assert torch.equal(v, v2), k
    assert torch.equal(next(straight.D.parameters()), next(resumed.D.parameters()))


def test_two_ranks_train_as_one_process_and_resume_as_one(faces16, tmp_path):
    """Same seed and global batch (8): 2 steps on 2 gloo ranks (R1 and path length both run at
    step 0) give one process's networks, EMA and path-length mean; the 2-rank run then resumes
    as one process and matches 4 steps of one process. No flips: data loading draws per rank."""
    from ddp_worker import STYLEGAN_OVERRIDES, assert_same, networks, run_ranks

    cfg = TrainConfig(**{**PRESETS["tiny"], **STYLEGAN_OVERRIDES})
    faces = FaceDataset(faces16.path, xflip=False)
    one = tmp_path / "one"
    expected = networks(train(cfg, faces, one, kimg=0.016, progress=False))
    rank0, rank1 = run_ranks("stylegan", tmp_path / "two", 2, faces16.path)
    assert_same(rank0, rank1, rtol=0, atol=0)  # the ranks hold one model
    assert_same(rank0, expected)
    resumed = train(cfg, faces, tmp_path / "two", kimg=0.032, progress=False, resume_from=tmp_path / "two")
    straight = train(cfg, faces, one, kimg=0.032, progress=False, resume_from=one)
    assert resumed.images_seen == 32 and [r["images_seen"] for r in resumed.history] == [16, 32]
    assert_same(networks(resumed), networks(straight))


def test_projected_discriminator_run_resumes_and_saves_its_discriminator(faces16, tmp_path):
    """``disc="projected"``: hinge loss, no R1, D's Adam on the heads alone; the float16
    discriminator file rebuilds the same network; a resumed run matches an uninterrupted one."""
    from stylegan_ops.discriminators import load_discriminator
    from stylegan_ops.projected import ProjectedDiscriminator
    from stylegan_ops.train import DISCRIMINATOR_FILE, PROJECTED_D_LR

    cfg = dataclasses.replace(TrainConfig(**PRESETS["tiny"]), kimg_per_interval=0.08, disc="projected",
                              modconv="batched", projected={"head_channels": 8, "proj_channels": [4, 8, 8, 8]})
    run = tmp_path / "run"
    first = train(cfg, faces16, run, kimg=0.08, progress=False)
    assert isinstance(first.D, ProjectedDiscriminator) and first.D.cfg.img_resolution == 16
    assert "r1_penalty" not in first.history[0] and "pl_penalty" in first.history[0]
    assert first.opt_D.param_groups[0]["lr"] == PROJECTED_D_LR
    assert {id(p) for p in first.opt_D.param_groups[0]["params"]} == {id(p) for p in first.D.parameters()}

    D = load_discriminator(run / DISCRIMINATOR_FILE).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = first.D.eval()(x)
        first.D.train()
        torch.testing.assert_close(D(x), expected, rtol=2e-2, atol=2e-2)  # float16 weights

    resumed = train(cfg, faces16, run, kimg=0.16, progress=False, resume_from=run)
    straight = train(cfg, faces16, tmp_path / "straight", kimg=0.16, progress=False)
    losses = lambda h: [{k: v for k, v in r.items() if k != "images_per_s"} for r in h]  # noqa: E731
    assert losses(resumed.history) == losses(straight.history)
    for (k, v), v2 in zip(straight.D.state_dict().items(), resumed.D.state_dict().values()):
        assert torch.equal(v, v2), k
