"""glcic-refine, ganbrush's GLCIC variant: the hole prefilled with the biharmonic fill and a
residual last layer. It starts exactly at the classical fill, learns corrections of it, is kept
apart from the paper's GLCIC (own method, own default file), and trains from a GLCIC network."""

import argparse
import json

import pytest
import torch

from ganbrush_core.training import TrainError
from inpainting import (
    CheckpointError,
    CompletionNetwork,
    GlcicConfig,
    Method,
    Prefill,
    default_method,
    glcic_checkpoints,
    glcic_inpaint,
    inpaint,
    inpaint_biharmonic,
    load_glcic,
    ready_methods,
    save_glcic,
)
from inpainting.cli import register_train
from inpainting.glcic import biharmonic_fill, completion_inputs
from inpainting.glcic_train import PRESETS, WEIGHTS_FILE, GlcicFaces, GlcicTrainConfig, GlcicTrainer, train_glcic

REFINE = GlcicConfig(channels=4, prefill="biharmonic")


def _face_like(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images in [-1, 1] and a square hole each."""
    torch.manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4) * 2 - 1, size=size, mode="bicubic").clamp(-1, 1)
    mask = torch.zeros(n, 1, size, size)
    mask[..., 8:20, 10:22] = 1
    return image, mask


def test_config_names_its_prefill_and_rejects_others():
    assert GlcicConfig().prefill == "mean" and not GlcicConfig().residual
    assert REFINE.residual and GlcicConfig(prefill=Prefill.BIHARMONIC).prefill == "biharmonic"
    with pytest.raises(ValueError, match="prefill must be one of mean, biharmonic") as e:
        GlcicConfig(prefill="telea")
    assert "\n" not in str(e.value)


def test_inputs_hold_the_biharmonic_fill_and_an_untrained_network_returns_it():
    image, mask = _face_like()
    image01 = (image + 1) / 2
    x = completion_inputs(image01, mask, (0.5, 0.5, 0.5), "biharmonic")
    fill = biharmonic_fill(image01, mask)
    assert torch.equal(x[:, :3], image01 * (1 - mask) + fill * mask) and torch.equal(x[:, 3:], mask)
    assert (fill - image01)[mask.expand_as(fill) < 0.5].abs().max() < 1e-6  # known pixels untouched
    net = CompletionNetwork(REFINE).eval()
    out = inpaint(image, mask, method="glcic-refine", model=net, poisson=False).image
    assert torch.allclose(out, inpaint_biharmonic(image, mask), atol=1e-5)  # zero residual: the classical fill
    with torch.no_grad():
        net.blocks[-1].conv.bias.fill_(0.05)  # a trained correction moves the fill, only inside the hole
    moved = inpaint(image, mask, method="glcic-refine", model=net, poisson=False).image
    inside = mask.expand_as(image) > 0.5
    assert torch.equal(moved[~inside], image[~inside]) and (moved - out)[inside].mean() > 0.05


def test_weights_keep_the_prefill_and_methods_match_their_networks(tmp_path):
    net = CompletionNetwork(REFINE).eval()
    loaded = load_glcic(save_glcic(net, tmp_path / "r.safetensors"))
    assert loaded.cfg == REFINE and isinstance(loaded.blocks[-1].act, torch.nn.Identity)
    assert load_glcic(tmp_path / "r.safetensors", mean_color=(0.1, 0.2, 0.3)).cfg.prefill == "biharmonic"
    image, mask = _face_like(1)
    with pytest.raises(ValueError, match="use method glcic-refine, not glcic"):
        inpaint(image, mask, method="glcic", model=loaded)
    with pytest.raises(ValueError, match="use method glcic, not glcic-refine"):
        inpaint(image, mask, method="glcic-refine", model=CompletionNetwork(GlcicConfig(channels=4)))


def test_default_refine_weights_missing_or_present(monkeypatch, tmp_path):
    monkeypatch.setattr(glcic_checkpoints, "DEFAULT_GLCIC_REFINE", tmp_path / "glcic64-refine.safetensors")
    glcic_inpaint._default_model.cache_clear()
    image, mask = _face_like(1)
    try:
        assert Method.GLCIC_REFINE not in ready_methods() and default_method() is Method.EDGECONNECT
        with pytest.raises(CheckpointError, match=r"\(biharmonic prefill\) is missing.*--glcic-weights"):
            inpaint(image, mask, method="glcic-refine")
        save_glcic(CompletionNetwork(REFINE).eval(), tmp_path / "glcic64-refine.safetensors")
        assert Method.GLCIC_REFINE in ready_methods() and default_method() is Method.GLCIC_REFINE
        out = inpaint(image, mask, method="glcic-refine", poisson=False).image
        assert torch.allclose(out, inpaint_biharmonic(image, mask), atol=1e-5)
    finally:
        glcic_inpaint._default_model.cache_clear()


def test_training_starts_from_a_glcic_network_and_learns_a_correction(faces_dir, tmp_path):
    torch.manual_seed(1)
    source = save_glcic(CompletionNetwork(GlcicConfig(channels=4)).eval(), tmp_path / "glcic.safetensors")
    cfg = GlcicTrainConfig(**{**PRESETS["tiny"], "prefill": "biharmonic", "init_weights": str(source),
                              "phase1_steps": 3, "phase2_steps": 0})
    trainer = train_glcic(cfg, GlcicFaces(faces_dir), tmp_path / "run", steps=3, progress=False)
    own, theirs = trainer.G.state_dict(), load_glcic(source).state_dict()
    last = f"blocks.{len(trainer.G.blocks) - 1}.conv.weight"
    assert not torch.equal(own["blocks.0.conv.weight"], theirs["blocks.0.conv.weight"])  # trained on from there
    assert own[last].abs().sum() > 0  # the zero-initialised correction has started to learn
    assert load_glcic(tmp_path / "run" / WEIGHTS_FILE).cfg.prefill == "biharmonic"
    fresh = GlcicTrainer(GlcicTrainConfig(**{**cfg.to_dict(), "mean_color": (0.5, 0.5, 0.5)}), GlcicFaces(faces_dir))
    fresh.start_from(source)  # every layer but the residual last one is the source's
    got = fresh.G.state_dict()
    assert all(torch.equal(got[k], theirs[k]) for k in got if not k.startswith(last.rsplit(".", 2)[0]))
    assert got[last].abs().sum() == 0
    fresh.start_from(tmp_path / "run" / WEIGHTS_FILE)  # a residual network continues as it is, last layer too
    assert torch.equal(fresh.G.state_dict()[last], own[last])
    wide = save_glcic(CompletionNetwork(GlcicConfig(channels=8)).eval(), tmp_path / "wide.safetensors")
    with pytest.raises(TrainError, match="not a completion network of width 4"):
        fresh.start_from(wide)


def test_cli_trains_the_variant(faces_dir, tmp_path, capsys):
    torch.manual_seed(2)
    source = save_glcic(CompletionNetwork(GlcicConfig(channels=4)).eval(), tmp_path / "glcic.safetensors")
    parser = argparse.ArgumentParser(prog="ganbrush")
    register_train(parser.add_subparsers(dest="command").add_parser("train").add_subparsers(dest="what"))
    out = tmp_path / "run"
    args = parser.parse_args(["train", "glcic", "--data", str(faces_dir), "--out", str(out), "--steps", "2",
                              "--preset", "tiny", "--prefill", "biharmonic", "--init", str(source), "--device", "cpu"])
    assert args.func(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["prefill"] == "biharmonic" and config["init_weights"] == str(source)
    assert load_glcic(out / WEIGHTS_FILE).cfg.residual


def test_weights_file_gets_measured_batch_norm_statistics(faces_dir, tmp_path):
    """The saved network's batch norms hold statistics measured on the fixed calibration batches
    with its final weights; the training network keeps its own running averages."""
    cfg = GlcicTrainConfig(**{**PRESETS["tiny"], "phase1_steps": 3, "phase2_steps": 0})
    trainer = train_glcic(cfg, GlcicFaces(faces_dir), tmp_path / "run", steps=3, progress=False)
    saved = load_glcic(tmp_path / "run" / WEIGHTS_FILE)
    own, theirs = trainer.G.state_dict(), saved.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in own if "running" not in k and "num_batches" not in k)
    assert not torch.equal(own["blocks.0.norm.running_mean"], theirs["blocks.0.norm.running_mean"])
    with torch.no_grad():
        first = torch.cat([saved.blocks[0].act(saved.blocks[0].conv(saved.inputs(*b)))
                           for b in trainer.calibration_batches()])
    assert torch.allclose(theirs["blocks.0.norm.running_mean"], first.mean((0, 2, 3)), atol=1e-5)
