"""Projection methods on a small random generator: each reduces its loss, recovers an image the
generator can make, PTI tunes a copy with the locality regulariser, results round-trip to .npz."""

from __future__ import annotations

import pytest
import torch

from ganbrush_core.metrics import lpips_model
from inversion.project import METHODS, ProjectionSettings, invert
from inversion.result import Inversion, InversionFileError
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator, GeneratorConfig, channels_for


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(img_resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channels=channels_for(32, 512, 32))
    G = Generator(cfg).eval()
    with torch.no_grad():
        for conv in G.synthesis_network.styled_convs():
            conv.noise_strength.fill_(0.1)
    return G


@pytest.fixture(scope="module")
def G() -> Generator:
    return small_generator()


@pytest.fixture(scope="module")
def perceptual():
    return lpips_model("vgg")


@pytest.fixture(scope="module")
def target(G) -> torch.Tensor:
    """Two images the generator can make exactly (random w+, with constant noise)."""
    torch.manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim))
        return G.synthesis(ws, noise_mode="const").clamp(-1, 1)


FAST = dict(w_avg_samples=2000)


@pytest.mark.parametrize("method", ["w+", "w"])
def test_methods_reduce_their_loss_and_approach_the_target(G, perceptual, target, method):
    calls = []
    inv = invert(G, target, method=method, steps=60, perceptual=perceptual, settings=ProjectionSettings(**FAST),
                 progress=lambda step, total, losses: calls.append((step, total)))
    assert calls[0] == (1, 60) and calls[-1] == (60, 60)
    first, last = inv.history[0]["lpips"], inv.history[-1]["lpips"]
    assert last < 0.7 * first
    with torch.no_grad():
        start = perceptual(G.synthesis(G.w_avg[None, None].repeat(2, G.num_ws, 1)), target)
    assert inv.final_losses["lpips"] < 0.6 * float(start.mean())
    assert inv.ws.shape == (2, G.num_ws, G.w_dim) and inv.reconstruction.shape == target.shape
    if method == "w":  # one w for every layer
        assert torch.allclose(inv.ws, inv.ws[:, :1].expand_as(inv.ws))
        assert all(m.shape[0] == 2 for m in inv.noises)


def test_w_plus_beats_w_at_equal_steps(G, perceptual, target):
    s = ProjectionSettings(**FAST)
    plus = invert(G, target, "w+", steps=80, perceptual=perceptual, settings=s)
    single = invert(G, target, "w", steps=80, perceptual=perceptual, settings=s)
    assert plus.final_losses["lpips"] < single.final_losses["lpips"]


def test_pti_tunes_a_copy_and_keeps_far_latents(G, perceptual, target, tmp_path):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    s = ProjectionSettings(pti_lr=1e-3, locality_interval=2, **FAST)
    inv = invert(G, target[:1], "pti", steps=40, pti_steps=60, perceptual=perceptual, settings=s)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items()), "G itself must not change"
    phases = [row["phase"] for row in inv.history]
    assert phases.count("pivot") == 40 and phases.count("pti") == 60
    pivot_lpips = [row["lpips"] for row in inv.history if row["phase"] == "pivot"][-1]
    assert inv.final_losses["lpips"] < 0.7 * pivot_lpips
    assert inv.generator_delta and all(k.startswith("synthesis_network.") for k in inv.generator_delta)
    tuned = inv.generator(G)
    assert torch.allclose(inv.render(G), inv.reconstruction, atol=1e-5)
    # Locality: far from the pivot the tuned generator still renders what G renders.
    with torch.no_grad():
        ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(5)))
        far = (tuned.synthesis(ws) - G.synthesis(ws)).abs().mean()
        near = (tuned.synthesis(inv.ws) - G.synthesis(inv.ws, noises=inv.noises)).abs().mean()
    assert far < near
    # The .npz carries the delta; loading against G rebuilds the tuned generator exactly.
    path = inv.save(tmp_path / "pti.npz")
    again = Inversion.load(path, G)
    assert again.method == "pti" and again.steps == 100
    assert torch.allclose(again.render(G), inv.reconstruction, atol=1e-5)


def test_inversion_file_round_trip_and_refusals(G, perceptual, target, tmp_path):
    inv = invert(G, target, "w+", steps=3, perceptual=perceptual, settings=ProjectionSettings(**FAST))
    path = inv.save(tmp_path / "a.npz")
    with pytest.raises(FileExistsError, match="force"):
        inv.save(path)
    again = Inversion.load(path, G)
    assert torch.equal(again.ws, inv.ws) and again.generator_hash == generator_hash(G)
    assert [r["phase"] for r in again.history] == ["w+"] * 3
    assert again.history[-1]["lpips"] == pytest.approx(inv.history[-1]["lpips"])
    assert again.final_losses == pytest.approx(inv.final_losses)
    with pytest.raises(InversionFileError, match="invert the photo again"):
        Inversion.load(path, small_generator(seed=7))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InversionFileError, match="not a readable"):
        Inversion.load(bad)
    with pytest.raises(InversionFileError, match="no such"):
        Inversion.load(tmp_path / "missing.npz")


def test_bad_requests_are_refused(G, perceptual, target):
    with pytest.raises(ValueError, match="unknown inversion method"):
        invert(G, target, "z", perceptual=perceptual)
    assert set(METHODS) == {"w+", "w", "pti", "encoder", "encoder+pti"}
    with pytest.raises(ValueError, match="resolution"):
        invert(G, torch.zeros(1, 3, 64, 64), perceptual=perceptual)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        invert(G, target * 200, perceptual=perceptual)
    with pytest.raises(TypeError, match="unknown setting"):
        invert(G, target, steps=1, perceptual=perceptual, learning_rate=3)
