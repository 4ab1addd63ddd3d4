"""GLCIC: networks, local patch placement, the three-phase schedule, resume, inference with and
without Poisson blending, the GLCIC-PyTorch loader against an independent oracle, the CLI."""

import argparse
import json

import numpy as np
import official_glcic as official  # beside this file (pytest puts its folder on sys.path)
import pytest
import torch
from PIL import Image

from inpainting import (
    METHODS,
    CheckpointError,
    CompletionNetwork,
    ContextDiscriminator,
    GlcicConfig,
    Method,
    glcic_checkpoints,
    glcic_inpaint,
    inpaint,
    inpaint_glcic,
    load_glcic,
    poisson_blend,
    ready_methods,
    save_glcic,
)
from inpainting import cli as inpaint_cli
from inpainting.cli import register_train
from inpainting.glcic import DILATIONS, completion_inputs, crop_patches, hole_patch_boxes
from inpainting.glcic_train import PRESETS, WEIGHTS_FILE, GlcicFaces, GlcicTrainConfig, GlcicTrainer, train_glcic

RES = 32
TINY = PRESETS["tiny"]


def _mask(n: int, h: int, w: int, top: int, left: int, size: int) -> torch.Tensor:
    mask = torch.zeros(n, 1, h, w)
    mask[..., top:top + size, left:left + size] = 1
    return mask


def test_shapes_ranges_and_input():
    net = CompletionNetwork(GlcicConfig(channels=4, mean_color=(0.2, 0.4, 0.6))).eval()
    image, mask = torch.rand(2, 3, RES, RES), _mask(2, RES, RES, 8, 8, 10)
    x = completion_inputs(image, mask, net.mean_color)
    assert x.shape == (2, 4, RES, RES)
    assert torch.equal(x[:, 3:], mask) and torch.equal(x[:, :3] * (1 - mask), image * (1 - mask))
    assert torch.allclose(x[0, :, 10, 10], torch.tensor([0.2, 0.4, 0.6, 1.0]))
    out = net(x)
    assert out.shape == (2, 3, RES, RES) and 0 <= out.min() and out.max() <= 1
    d = ContextDiscriminator(RES, channels=4, features=32)
    assert d.local_size == RES // 2
    assert d(image, image[..., :16, :16]).shape == (2,)
    with pytest.raises(ValueError, match="16x16"):
        d(image, image)
    with pytest.raises(ValueError, match="even"):
        GlcicConfig(channels=3)


def _reach(net: CompletionNetwork, side: int) -> int:
    """How far (in pixels, Chebyshev) from the centre an input pixel still moves the centre output."""
    x = torch.rand(1, 4, side, side, requires_grad=True)
    net(x)[0, :, side // 2, side // 2].sum().backward()
    ys, xs = (x.grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
    return int(torch.maximum((ys - side // 2).abs(), (xs - side // 2).abs()).max())


def test_dilation_widens_the_receptive_field():
    torch.manual_seed(0)
    net = CompletionNetwork(GlcicConfig(channels=4)).eval()
    dilated = _reach(net, 320)
    for block in net.blocks:
        if block.conv.dilation[0] > 1:
            block.conv.dilation, block.conv.padding = (1, 1), (1, 1)
    plain = _reach(net, 320)
    # Each dilated 3x3 at 1/4 resolution reaches (rate - 1) * 4 px further than a plain one.
    assert dilated - plain >= 4 * sum(d - 1 for d in DILATIONS) - 8
    assert dilated > 120 > plain


def test_local_patch_is_centred_on_the_hole_and_clamped():
    mask = torch.cat([_mask(1, RES, RES, 10, 10, 4), _mask(1, RES, RES, 0, 26, 6),
                      torch.zeros(1, 1, RES, RES), _mask(1, RES, RES, 28, 0, 4)])
    boxes = hole_patch_boxes(mask, 16)
    assert boxes.tolist() == [[4, 4], [0, 16], [8, 8], [16, 0]]
    image = torch.rand(4, 3, RES, RES)
    patches = crop_patches(image, boxes, 16)
    assert torch.equal(patches[1], image[1, :, 0:16, 16:32])
    # The hole lies inside its patch.
    for m, (t, x) in zip(mask, boxes.tolist()):
        assert m[0, t:t + 16, x:x + 16].sum() == m.sum()
    with pytest.raises(ValueError, match="patch size"):
        hole_patch_boxes(mask, 40)


def test_both_discriminators_decide():
    torch.manual_seed(0)
    d = ContextDiscriminator(RES, channels=4, features=32).eval()
    image = torch.rand(2, 3, RES, RES, requires_grad=True)
    patch = torch.rand(2, 3, 16, 16, requires_grad=True)
    d(image, patch).sum().backward()
    assert image.grad.abs().sum() > 0 and patch.grad.abs().sum() > 0
    assert d.fc.in_features == 2 * 32


def _params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_phase_switches_train_the_right_networks(faces_dir):
    cfg = GlcicTrainConfig(**TINY, mean_color=(0.5, 0.5, 0.5))
    assert [cfg.phase(s) for s in range(6)] == [1, 1, 2, 2, 3, 3]
    trainer = GlcicTrainer(cfg, GlcicFaces(faces_dir))
    for phase in [1, 1, 2, 2, 3, 3]:
        g, d = _params(trainer.G), _params(trainer.D)
        stats = trainer.train_step()
        assert (_changed(g, trainer.G), _changed(d, trainer.D)) == (phase != 2, phase != 1)
        assert ("loss_D" in stats) == (phase != 1) and ("G_adv" in stats) == (phase == 3)
    # D is frozen only during G's adversarial step: trainable again after it.
    assert all(p.requires_grad for p in trainer.D.parameters())


def test_resume_is_bit_exact(faces_dir, tmp_path):
    cfg = GlcicTrainConfig(**TINY)
    straight = train_glcic(cfg, GlcicFaces(faces_dir), tmp_path / "straight", steps=6, progress=False)
    train_glcic(cfg, GlcicFaces(faces_dir), tmp_path / "resumed", steps=3, progress=False)
    resumed = train_glcic(GlcicTrainConfig(channels=2), GlcicFaces(faces_dir), tmp_path / "resumed", steps=6,
                          progress=False, resume_from=tmp_path / "resumed")
    assert resumed.step == 6 and resumed.cfg.channels == TINY["channels"]
    timing = {"steps_per_s", "images_per_s"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == \
           [{k: v for k, v in h.items() if k not in timing} for h in straight.history]
    for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.D.state_dict().values(), resumed.D.state_dict().values()):
        assert torch.equal(a, b)
    # The weights file loads, with the measured mean colour of the data.
    net = load_glcic(tmp_path / "straight" / WEIGHTS_FILE)
    mean = GlcicFaces(faces_dir).mean_color()
    assert net.cfg.mean_color == pytest.approx(mean) and net.cfg.channels == TINY["channels"]
    assert {"samples_00000006.png", "losses.png", "log.jsonl"} <= {p.name for p in (tmp_path / "straight").iterdir()}


@pytest.mark.parametrize("poisson", [False, True])
def test_inference_keeps_known_pixels_exactly(poisson):
    torch.manual_seed(0)
    net = CompletionNetwork(GlcicConfig(channels=4)).eval()
    image = torch.rand(2, 3, 30, 34) * 2 - 1  # not a multiple of 4: padded and cropped back
    mask = _mask(2, 30, 34, 0, 5, 12)  # touching the top edge
    out = inpaint_glcic(image, mask, net, poisson=poisson)
    assert out.shape == image.shape and torch.equal(out * (1 - mask), image * (1 - mask))
    assert not torch.equal(out, image)
    assert torch.equal(inpaint(image, mask, method="glcic", model=net).image, inpaint_glcic(image, mask, net))


def test_poisson_blend_matches_the_border_and_keeps_the_rest():
    yy, xx = np.mgrid[0:48, 0:48]
    original = np.stack([yy * 3, xx * 3, (yy + xx) * 2], -1).astype(np.uint8)
    mask = np.zeros((48, 48), bool)
    mask[16:32, 20:36] = True
    mask[5, 5:30] = True  # a stroke one pixel wide
    # A fill (the network's whole output) with the right gradients at the wrong level: the blend
    # restores the level from the known border.
    filled = original + 40.0
    out = poisson_blend(filled, original, mask)
    assert np.array_equal(out[~mask], original[~mask])
    assert np.abs(out[mask].astype(int) - original[mask]).max() <= 1
    # What the hole held is never read: the blend cannot copy back what the hole removes.
    scrawled = original.copy()
    scrawled[mask] = 255 - scrawled[mask]
    assert np.array_equal(poisson_blend(filled, scrawled, mask), out)
    # A flat fill gives the harmonic interpolation of the border (float in, float out).
    flat = poisson_blend(np.zeros((48, 48, 3)), original.astype(np.float64), mask)
    inner = flat[17:31, 21:35]
    laplacian = 4 * inner - flat[16:30, 21:35] - flat[18:32, 21:35] - flat[17:31, 20:34] - flat[17:31, 22:36]
    assert flat.dtype == np.float64 and np.abs(laplacian).max() < 1e-8
    assert out.dtype == np.uint8 and np.array_equal(poisson_blend(filled, original, np.zeros_like(mask)), original)
    edge = np.zeros_like(mask)
    edge[:10, :10] = True  # a hole in the corner blends too
    assert np.array_equal(poisson_blend(filled, original, edge)[~edge], original[~edge])
    with pytest.raises(ValueError, match="one size"):
        poisson_blend(filled[:10], original, mask)
    # GLCIC's output into the real hole only: a changed hole content changes nothing.
    torch.manual_seed(0)
    net = CompletionNetwork(GlcicConfig(channels=4)).eval()
    image, hole = torch.rand(1, 3, 24, 24) * 2 - 1, _mask(1, 24, 24, 6, 6, 10)
    assert torch.equal(inpaint_glcic(image, hole, net), inpaint_glcic(torch.where(hole > 0, -image, image), hole, net))


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    net = official.randomize(official.OfficialCompletionNetwork(), seed=3)
    return net, official.save_official(net, d / "model_cn", mpv=[0.3, 0.5, 0.7])


def test_official_checkpoint_matches_the_oracle(official_file, tmp_path):
    oracle, path = official_file
    net = load_glcic(path)
    assert net.cfg.channels == 64 and net.cfg.mean_color == pytest.approx((0.3, 0.5, 0.7))
    g = torch.Generator().manual_seed(5)
    x, mask = torch.rand(2, 3, 32, 32, generator=g), _mask(2, 32, 32, 6, 9, 13)
    with torch.no_grad():
        expected = oracle(official.official_input(x, mask, torch.tensor([0.3, 0.5, 0.7])))
        got = net(completion_inputs(x, mask, net.mean_color))
    assert (expected - got).abs().max() < 1e-5
    # ganbrush's own format round-trips.
    save_glcic(net, tmp_path / "g.safetensors")
    with torch.no_grad():
        again = load_glcic(tmp_path / "g.safetensors")(completion_inputs(x, mask, net.mean_color))
    assert torch.equal(again, got)
    with pytest.raises(FileExistsError, match="exists"):
        save_glcic(net, tmp_path / "g.safetensors")


def test_official_checkpoint_errors(official_file, tmp_path):
    oracle, _ = official_file
    bare = official.save_official(oracle, tmp_path / "model_cn")
    with pytest.raises(CheckpointError, match="mean colour") as e:
        load_glcic(bare)
    assert "\n" not in str(e.value)
    assert load_glcic(bare, mean_color=(0.1, 0.2, 0.3)).cfg.mean_color == (0.1, 0.2, 0.3)
    torch.save({"net": argparse.Namespace(a=1)}, tmp_path / "object.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_glcic(tmp_path / "object.pth")
    torch.save({"generator": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="model_cn state dict"):
        load_glcic(tmp_path / "other.pth", mean_color=(0.5, 0.5, 0.5))


@pytest.fixture
def default_glcic(monkeypatch, tmp_path):
    """Points the shipped default at ``tmp_path/glcic64.safetensors`` (absent until a test writes
    it) and empties the default-model cache around the test."""
    path = tmp_path / "glcic64.safetensors"
    monkeypatch.setattr(glcic_checkpoints, "DEFAULT_GLCIC", path)
    monkeypatch.setattr(glcic_checkpoints, "DEFAULT_GLCIC_REFINE", tmp_path / "glcic64-refine.safetensors")
    glcic_inpaint._default_model.cache_clear()
    yield path
    glcic_inpaint._default_model.cache_clear()


def test_default_weights_missing_or_present(default_glcic):
    image, mask = torch.zeros(1, 3, 16, 16), _mask(1, 16, 16, 4, 4, 4)
    for call in (lambda: inpaint(image, mask, method="glcic"), lambda: METHODS[Method.GLCIC](image, mask)):
        with pytest.raises(CheckpointError, match=r"default GLCIC model \(mean prefill\) is missing") as e:
            call()
        assert "--glcic-weights" in str(e.value) and "\n" not in str(e.value)
    assert Method.GLCIC not in ready_methods() and Method.EDGECONNECT in ready_methods()
    torch.manual_seed(0)
    net = CompletionNetwork(GlcicConfig(channels=4, mean_color=(0.2, 0.3, 0.4))).eval()
    save_glcic(net, default_glcic)
    assert Method.GLCIC in ready_methods()
    assert load_glcic().cfg.mean_color == (0.2, 0.3, 0.4)
    out = inpaint(image, mask, method="glcic", poisson=False).image
    assert torch.equal(out, inpaint_glcic(image, mask, net, poisson=False))


def test_poisson_is_glcic_only():
    image, mask = torch.zeros(1, 3, 16, 16), _mask(1, 16, 16, 4, 4, 4)
    with pytest.raises(ValueError, match="only applies to the glcic methods"):
        inpaint(image, mask, method="telea", poisson=False)


def test_cli_trains(faces_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ganbrush")
    train_sub = parser.add_subparsers(dest="command").add_parser("train").add_subparsers(dest="what")
    register_train(train_sub)
    out = tmp_path / "run"
    args = parser.parse_args(["train", "glcic", "--data", str(faces_dir), "--out", str(out), "--steps", "3",
                              "--preset", "tiny", "--phase1-steps", "1", "--phase2-steps", "1", "--device", "cpu"])
    assert args.func(args) == 0
    assert "3 steps (phase 3)" in capsys.readouterr().out and (out / WEIGHTS_FILE).is_file()
    assert json.loads((out / "config.json").read_text())["phase1_steps"] == 1


def test_inpaint_cli_glcic(tmp_path, default_glcic):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((24, 28), np.uint8)
    mask[6:14, 9:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    parser = argparse.ArgumentParser(prog="ganbrush")
    inpaint_cli.register(parser.add_subparsers(dest="command"))
    base = ["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "mask.png"), "--method", "glcic", "--out"]
    args = parser.parse_args([*base, str(tmp_path / "a.png")])
    with pytest.raises(CheckpointError, match="--glcic-weights"):
        args.func(args)  # no default in this installation
    torch.manual_seed(0)
    weights = save_glcic(CompletionNetwork(GlcicConfig(channels=4)).eval(), tmp_path / "g.safetensors")
    photo = np.asarray(Image.open(tmp_path / "photo.png"))
    outs = {}
    for name, extra in (("b", ["--glcic-weights", str(weights)]),
                        ("c", ["--glcic-weights", str(weights), "--no-poisson"])):
        args = parser.parse_args([*base, str(tmp_path / f"{name}.png"), *extra])
        assert args.func(args) == 0
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))
        assert np.array_equal(outs[name][mask == 0], photo[mask == 0]) and not np.array_equal(outs[name], photo)
    assert not np.array_equal(outs["b"], outs["c"])  # the blending changes the fill
    save_glcic(CompletionNetwork(GlcicConfig(channels=4)).eval(), default_glcic)
    args = parser.parse_args([*base, str(tmp_path / "d.png")])
    assert args.func(args) == 0  # the default model, without --glcic-weights
    for extra in (["--glcic-weights", str(weights)], ["--no-poisson"]):
        args = parser.parse_args([*base[:-3], "--method", "telea", "--out", str(tmp_path / "e.png"), *extra])
        with pytest.raises(ValueError, match="only apply to --method glcic and glcic-refine"):
            args.func(args)


def test_discriminator_is_saved_in_float16_and_starts_a_new_run(faces_dir, tmp_path):
    from ganbrush_core.training import TrainError
    from inpainting.glcic_checkpoints import load_discriminator, save_discriminator
    from inpainting.glcic_train import DISCRIMINATOR_FILE

    cfg = GlcicTrainConfig(**{**TINY, "phase1_steps": 0, "phase2_steps": 3})
    first = train_glcic(cfg, GlcicFaces(faces_dir), tmp_path / "a", steps=3, progress=False)
    saved = tmp_path / "a" / DISCRIMINATOR_FILE
    D = load_discriminator(saved)
    for k, v in D.state_dict().items():
        want = first.D.state_dict()[k]
        assert torch.equal(v, want.half().float() if want.is_floating_point() else want), k
    second = train_glcic(GlcicTrainConfig(**{**cfg.to_dict(), "init_discriminator": str(saved)}),
                         GlcicFaces(faces_dir), tmp_path / "b", steps=0, progress=False)
    assert all(torch.equal(v, D.state_dict()[k]) for k, v in second.D.state_dict().items())
    other = save_discriminator(ContextDiscriminator(RES, channels=8, features=32), tmp_path / "other.safetensors")
    with pytest.raises(TrainError, match="other sizes than this run's"):
        second.start_discriminator_from(other)
    with pytest.raises(CheckpointError, match="not a GLCIC context discriminator"):
        load_discriminator(tmp_path / "a" / WEIGHTS_FILE)
