"""The e4e-style encoder: shapes, offsets, gradients, files bound to a generator, training and
resume, the ``encoder`` / ``encoder+pti`` inversion methods and the shipped encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from inversion.encoder import (
    Encoder,
    EncoderConfig,
    EncoderError,
    default_encoder_path,
    encode,
    load_encoder,
    save_encoder,
)
from inversion.encoder_train import PRESETS, EncoderTrainConfig, active_offsets, train_encoder
from inversion.project import invert
from stylegan_ops.checkpoints import generator_hash, load_generator, save_generator

RES = 32  # smallest side where both LPIPS networks (AlexNet: 31 px) and the three VGG taps work


@pytest.fixture(scope="module")
def generator32(make_generator):
    return make_generator(RES)


@pytest.fixture(scope="module")
def encoder32(generator32) -> Encoder:
    torch.manual_seed(0)
    E = Encoder(EncoderConfig.for_generator(generator32, channels=16))
    E.w_avg.copy_(generator32.w_avg)
    E.generator_hash = generator_hash(generator32)
    return E.eval()


def test_untrained_encoder_outputs_the_mean_latent(generator32, encoder32):
    ws = encoder32(torch.rand(2, 3, RES, RES) * 2 - 1)
    assert ws.shape == (2, generator32.num_ws, generator32.w_dim)
    # The last layer of every head starts at zero: an untrained encoder draws the average face.
    torch.testing.assert_close(ws, generator32.w_avg.expand_as(ws))


def test_levels_split_the_layers_coarse_middle_fine(generator32):
    E = Encoder(EncoderConfig.for_generator(generator32, channels=8))
    levels = [E.level_of(i) for i in range(generator32.num_ws)]
    assert levels[0] == 2 and levels[-1] == 0  # coarse layers read the 1/8 level, fine ones the 1/2 level
    assert levels == sorted(levels, reverse=True)


def test_inactive_offsets_share_the_base_code(generator32):
    torch.manual_seed(1)
    E = Encoder(EncoderConfig.for_generator(generator32, channels=8))
    for head in E.heads:
        torch.nn.init.normal_(head[-1].weight, std=0.5)
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    E.active.fill_(1)
    ws = E(x)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    E.active.fill_(3)
    ws = E(x)
    assert not torch.allclose(ws[:, 1], ws[:, 0]) and not torch.allclose(ws[:, 2], ws[:, 0])
    assert torch.equal(ws[:, 3:], ws[:, :1].expand_as(ws[:, 3:]))
    assert E.offsets(ws).shape == (2, generator32.num_ws - 1, generator32.w_dim)


def test_gradients_reach_the_heads_but_not_the_frozen_backbone(generator32):
    torch.manual_seed(2)
    E = Encoder(EncoderConfig.for_generator(generator32, channels=8))
    for head in E.heads:  # zero-initialised: only their last layer would get a gradient
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    ws = E(torch.rand(2, 3, RES, RES) * 2 - 1)
    generator32.synthesis(ws).square().mean().backward()
    assert all(p.grad is None for p in E.backbone.parameters())
    grads = [p.grad for n, p in E.named_parameters() if n.startswith("heads.")]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert E.laterals[0].weight.grad is not None and E.laterals[0].weight.grad.abs().sum() > 0


def test_progressive_schedule():
    cfg = EncoderTrainConfig(progressive_start=10, progressive_every=5)
    assert [active_offsets(cfg, s, 6) for s in (0, 9, 10, 14, 15, 20, 100)] == [1, 1, 2, 2, 3, 4, 6]


def test_wrong_input_is_one_clear_error(encoder32):
    with pytest.raises(EncoderError, match=r"aligned faces \[N, 3, 32, 32\]"):
        encoder32(torch.zeros(1, 3, 64, 64))


def test_file_round_trip_is_bound_to_the_generator(tmp_path, generator32, encoder32, make_generator):
    path = save_encoder(encoder32, tmp_path / "e.safetensors", generator32)
    assert (path.stat().st_mode & 0o777) == 0o644
    E = load_encoder(path, generator32)
    x = torch.rand(1, 3, RES, RES) * 2 - 1
    torch.testing.assert_close(encode(E, x), encode(encoder32, x), atol=1e-3, rtol=1e-3)  # stored as fp16
    assert not any(k.startswith("backbone.") for k in E.trainable_state())
    other = make_generator(RES, seed=1)
    with pytest.raises(EncoderError, match="was trained for generator"):
        load_encoder(path, other)
    with pytest.raises(EncoderError, match="was trained for generator"):
        invert(other, x, method="encoder", encoder=E)
    with pytest.raises(FileExistsError):
        save_encoder(encoder32, path, generator32)


def test_unreadable_files_are_refused(tmp_path, generator32):
    with pytest.raises(EncoderError, match="no such encoder file"):
        load_encoder(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderError, match="bad.safetensors"):
        load_encoder(bad)
    other = tmp_path / "g.safetensors"
    save_generator(generator32, other)
    with pytest.raises(EncoderError, match="not a ganbrush encoder"):
        load_encoder(other)


def test_encoder_methods_of_invert(generator32, encoder32):
    x = torch.rand(1, 3, RES, RES) * 2 - 1
    one_pass = invert(generator32, x, method="encoder", encoder=encoder32, w_avg_samples=100)
    assert one_pass.steps == 0 and one_pass.generator_delta is None
    torch.testing.assert_close(one_pass.ws, encode(encoder32, x))
    tuned = invert(generator32, x, method="encoder+pti", encoder=encoder32, pti_steps=3, steps=50)
    assert tuned.steps == 3  # the pivot phase is skipped: the encoder's code is the pivot
    assert [h["phase"] for h in tuned.history] == ["pti"] * 3
    torch.testing.assert_close(tuned.ws, one_pass.ws)
    assert tuned.generator_delta and tuned.final_losses["lpips"] < one_pass.final_losses["lpips"]


@pytest.fixture(scope="module")
def packed32(tmp_path_factory, face_data_root) -> Path:
    from ganbrush_core.faces import build_face_dataset

    out = tmp_path_factory.mktemp("faces32")
    build_face_dataset(out, res=RES, split="train", limit=16, data_root=face_data_root, force=True, progress=False)
    return out


def _tiny_config(tmp_path: Path, generator32) -> EncoderTrainConfig:
    path = tmp_path / "g32.safetensors"
    if not path.exists():
        save_generator(generator32, path)
    return dataclasses.replace(EncoderTrainConfig(generator=str(path), **PRESETS["tiny"]), steps_per_interval=2)


def test_training_writes_a_loadable_encoder_and_resumes_exactly(tmp_path, generator32, packed32):
    cfg = _tiny_config(tmp_path, generator32)
    straight = train_encoder(cfg, packed32, tmp_path / "a", steps=4, progress=False)
    train_encoder(cfg, packed32, tmp_path / "b", steps=2, progress=False)
    resumed = train_encoder(cfg, packed32, tmp_path / "b", steps=4, resume_from=tmp_path / "b", progress=False)
    for k, v in straight.E.trainable_state().items():
        assert torch.equal(v, resumed.E.trainable_state()[k]), k
    assert [r["loss_E"] for r in straight.history] == [r["loss_E"] for r in resumed.history]
    run = tmp_path / "a"
    for name in ("encoder.safetensors", "checkpoint.pt", "log.jsonl", "losses.png", "samples_00000004.png"):
        assert (run / name).is_file(), name
    assert "heldout_lpips" in straight.history[-1]
    E = load_encoder(run / "encoder.safetensors", load_generator(cfg.generator))
    assert int(E.active) == straight.E.active.item()
    with pytest.raises(ValueError, match="already holds a run"):
        train_encoder(cfg, packed32, run, steps=6, progress=False)


def test_training_refuses_data_of_another_resolution(tmp_path, generator32, face_data_root):
    from ganbrush_core.faces import build_face_dataset

    data16 = tmp_path / "faces16"
    build_face_dataset(data16, res=16, split="train", limit=4, data_root=face_data_root, force=True, progress=False)
    with pytest.raises(ValueError, match="ganbrush data faces --res 32"):
        train_encoder(_tiny_config(tmp_path, generator32), data16, tmp_path / "run", steps=1, progress=False)


def test_train_encoder_cli(tmp_path, generator32, packed32, capsys):
    from ganbrush_cli import main

    gen = tmp_path / "g32.safetensors"
    save_generator(generator32, gen)
    argv = ["train", "encoder", "--data", str(packed32), "--out", str(tmp_path / "run"), "--generator", str(gen),
            "--steps", "2", "--preset", "tiny", "--device", "cpu"]
    assert main(argv) == 0
    assert "encoder.safetensors" in capsys.readouterr().out
    assert main(argv) == 2  # the run exists: refused with one line
    assert "already holds a run" in capsys.readouterr().err
    assert main(argv[:-4] + ["--steps", "0"]) == 2


# ---------------------------------------------------------------------------------------------
# The shipped encoder


@pytest.fixture(scope="module")
def shipped():
    if not default_encoder_path().is_file():
        pytest.fail(f"the shipped encoder {default_encoder_path()} is missing")
    G = load_generator("default")
    return G, load_encoder("default", G)


def test_shipped_encoder_reconstructs_held_out_faces(shipped):
    from ganbrush_core.faces import held_out_faces
    from ganbrush_core.metrics import lpips_model

    G, E = shipped
    faces = held_out_faces(8, G.img_resolution)
    with torch.no_grad():
        recon = G.synthesis(encode(E, faces))
        lp = lpips_model("vgg")(recon, faces).mean().item()
        mean_face = G.synthesis(G.w_avg.expand(8, G.num_ws, -1).clone())
        baseline = lpips_model("vgg")(mean_face, faces).mean().item()
    assert lp < baseline - 0.05  # clearly better than drawing the average face for everyone
    assert lp < 0.36, lp  # the shipped file measures 0.323 on these 8 faces (its card)


def test_shipped_encoder_refuses_another_generator(shipped, make_generator):
    G = make_generator(64, w_dim=256, z_dim=256)
    with pytest.raises(EncoderError, match="shipped|encoder64"):
        invert(G, torch.zeros(1, 3, 64, 64), method="encoder")


def test_invert_cli_with_the_shipped_encoder_on_a_photo(shipped, photos_dir, tmp_path):
    import subprocess
    import sys

    from inversion.result import Inversion

    src = next(photos_dir.glob("laos*"))
    out = subprocess.run([sys.executable, "-m", "ganbrush_cli", "invert", str(src), "--out", str(tmp_path),
                          "--method", "encoder+pti", "--pti-steps", "3", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    inv = Inversion.load(tmp_path / "inversion.npz", shipped[0])
    assert inv.method == "encoder+pti" and inv.steps == 3 and inv.generator_delta
    # The shipped encoder fits only the shipped generator: another one is refused in one line.
    G2 = load_generator("default")
    with torch.no_grad():
        G2.mapping_network.layers[0].bias.add_(0.01)
    other = save_generator(G2, tmp_path / "other.safetensors")
    out = subprocess.run([sys.executable, "-m", "ganbrush_cli", "invert", str(src), "--out", str(tmp_path / "o"),
                          "--method", "encoder", "--generator", str(other)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "was trained for generator" in out.stderr
