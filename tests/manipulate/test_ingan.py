"""InGAN networks and the per-image trainer (tiny nets, tiny images: seconds)."""

import ast
import json

import pytest
import torch
import torch.nn.functional as F

from ganbrush_core.paths import REPO_ROOT
from ganbrush_core.weights import save_safetensors
from manipulate.ingan import Discriminator, Generator, InGANConfig, resample
from manipulate.ingan_train import (
    GENERATOR_FILE,
    InGANFileError,
    InGANTrainConfig,
    InGANTrainer,
    load_ingan,
    train_ingan,
)

TINY = InGANConfig(g_channels=8, g_blocks=2, d_channels=8)


def pattern(h: int = 24, w: int = 32) -> torch.Tensor:
    """A smooth, textured test image [1, 3, h, w] in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 6, h), torch.linspace(0, 8, w), indexing="ij")
    return torch.stack([torch.sin(x + y), torch.cos(2 * x), torch.sin(3 * y) * 0.5])[None] * 0.8


@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize("shape", [(24, 32), (33, 47), (64, 17), (16, 90)])
def test_generator_output_has_the_shape_asked(shape, skips):
    G = Generator(InGANConfig(g_channels=8, g_blocks=1, skips=skips))
    with torch.no_grad():
        y = G(pattern(), shape)
    assert y.shape == (1, 3, *shape) and y.abs().max() <= 1
    assert G(pattern()).shape == (1, 3, 24, 32)  # no shape: the input's


def test_generator_refuses_sides_under_16_px():
    with pytest.raises(ValueError, match="at least 16 px"):
        Generator(TINY)(pattern(), (12, 40))


def test_geometric_layer_is_exact_at_identity_and_a_scaling_otherwise():
    f = torch.randn(2, 5, 9, 13)
    assert torch.equal(resample(f, (9, 13)), f)
    expected = F.interpolate(f, size=(18, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resample(f, (18, 20)), expected, atol=1e-5, rtol=0)


def test_discriminator_gives_one_patch_map_per_scale_it_fits():
    D = Discriminator(TINY)
    maps = D(pattern(40, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 1, 32, 56), (1, 1, 12, 24), (1, 1, 2, 8)]
    assert len(D(pattern(20, 64))) == 2  # the 5 px level is smaller than a patch: not judged


def test_shape_range_grows_from_identity_to_the_full_range():
    t = InGANTrainer(InGANTrainConfig(net=TINY, ramp=0.5), pattern(), steps=100, device=torch.device("cpu"))
    assert t.scale_range() == (1.0, 1.0) and t.random_shape() == (24, 32)
    t.step = 25
    lo, hi = t.scale_range()
    assert 0.5 < lo < 1 < hi < 2
    t.step = 60
    assert t.scale_range() == (0.5, 2.0)


def test_with_the_image_skip_an_untrained_generator_is_a_sharp_stretch():
    x = pattern()
    G = Generator(TINY).eval()
    with torch.no_grad():
        assert torch.equal(G(x), x)
        torch.testing.assert_close(G(x, (30, 50)), resample(x, (30, 50)).clamp(-1, 1))


def test_training_learns_to_redraw_the_image_and_saves_it(tmp_path):
    x = pattern()
    net = InGANConfig(g_channels=8, g_blocks=2, d_channels=8, image_skip=False)  # it must learn it all
    cfg = InGANTrainConfig(net=net, lr_g=2e-3, lr_d=2e-3)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        untrained = float((Generator(net)(x) - x).abs().mean())
    seen = []
    trainer = train_ingan(x, tmp_path / "run", 80, cfg, progress=False, on_step=lambda s, n: seen.append((s, n)))
    assert seen[0] == (0, 80) and seen[-1] == (79, 80)
    rec = trainer.history[-1]["sample_rec_l1"]
    assert rec < 0.5 * untrained, (rec, untrained)
    run = tmp_path / "run"
    assert {"log.jsonl", "losses.png", GENERATOR_FILE, "samples_00000040.png"} <= {p.name for p in run.iterdir()}
    G, image, cfg2, info = load_ingan(run / GENERATOR_FILE)
    assert cfg2 == cfg and info == {"step": 80} and torch.equal(image, x)
    with torch.no_grad():
        torch.testing.assert_close(G(image, (30, 50)), trainer.G.eval()(x, (30, 50)))


def test_training_with_the_image_skip_changes_the_stretch_and_keeps_the_identity(tmp_path):
    x = pattern(32, 32)
    trainer = train_ingan(x, tmp_path, 40, InGANTrainConfig(net=TINY, lr_d=2e-3), progress=False)
    G = trainer.G.eval()
    with torch.no_grad():
        assert (G(x) - x).abs().mean() < 0.05
        assert (G(x, (32, 56)) - resample(x, (32, 56))).abs().mean() > 1e-3


def test_a_cancelling_callback_stops_training(tmp_path):
    def stop(step, total):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ingan(pattern(), tmp_path, 50, InGANTrainConfig(net=TINY), progress=False, on_step=stop)
    assert not (tmp_path / GENERATOR_FILE).exists()


def test_another_kind_of_file_is_refused_in_one_line(tmp_path):
    path = save_safetensors(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, format="other", version="1",
                            config={})
    with pytest.raises(InGANFileError, match="not an InGAN model") as info:
        load_ingan(path)
    assert "\n" not in str(info.value)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(InGANFileError, match="corrupt"):
        load_ingan(tmp_path / "bad.safetensors")


def test_config_round_trips_and_refuses_unknown_keys():
    cfg = InGANTrainConfig(net=TINY, w_rec=0.3)
    assert InGANTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        InGANTrainConfig.from_dict({**cfg.to_dict(), "lambda": 1})


@pytest.mark.parametrize("module", ["ingan", "ingan_train", "retarget", "retarget_cli", "seam_carving"])
def test_retargeting_stands_on_the_foundation_alone(module):
    """It lives in manipulate/ but needs no StyleGAN, inversion or inpainting code."""
    tree = ast.parse((REPO_ROOT / "manipulate" / f"{module}.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"stylegan_ops", "inversion", "inpainting"}
