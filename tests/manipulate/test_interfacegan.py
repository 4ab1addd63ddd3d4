"""InterFaceGAN boundaries: the SVM fit on known data, the sign convention, and the full pipeline on a
tiny random generator and classifier (API, per-layer boundaries, file and CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from manipulate.attributes import (
    DEFAULT_CLASSIFIER,
    SCORE_NAMES,
    AttributeClassifier,
    ClassifierConfig,
    attribute_scores,
    load_classifier,
    save_classifier,
)
from manipulate.directions import load_directions, save_directions
from manipulate.interfacegan import fit_boundary, interfacegan
from stylegan_ops import Generator, save_generator
from stylegan_ops.networks import sample_w


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def G(make_generator) -> Generator:
    return make_generator(16, channel_base=128)


@pytest.fixture(scope="module")
def clf() -> AttributeClassifier:
    torch.manual_seed(1)
    return AttributeClassifier(ClassifierConfig(resolution=16, channels=(8, 16))).eval()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_boundary_recovers_a_linear_attribute_pointing_to_high_scores(sign):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(2000, 12)) * rng.uniform(0.5, 2, size=12) + 3.0  # offset and anisotropy
    truth = unit(rng.normal(size=12))
    scores = sign * (latents @ truth) + rng.normal(scale=0.1, size=2000)
    normal, info = fit_boundary(latents, scores, ratio=0.3, val_fraction=0.2, seed=0)
    assert np.linalg.norm(normal) == pytest.approx(1.0)
    assert normal @ (sign * truth) > 0.95
    assert info["svm_val_accuracy"] > 0.97 and info["positives"] == info["negatives"] == 600
    assert info["score_high_cut"] > info["score_low_cut"] and info["score_correlation"] > 0.9


def test_fit_boundary_on_noise_is_near_chance():
    rng = np.random.default_rng(1)
    _, info = fit_boundary(rng.normal(size=(3000, 8)), rng.normal(size=3000))
    assert 0.35 < info["svm_val_accuracy"] < 0.65


def test_fit_boundary_rejects_bad_settings():
    x, s = np.zeros((20, 3)), np.arange(20.0)
    with pytest.raises(ValueError, match="ratio"):
        fit_boundary(x, s, ratio=0.7)
    with pytest.raises(ValueError, match="more samples"):
        fit_boundary(x, s, ratio=0.1)


def test_boundaries_of_a_tiny_generator_follow_the_classifier(G, clf):
    names = ["smiling", "age", "gender"]
    dirs = interfacegan(G, clf, names, samples=600, seed=0, layers=(1, 4), progress=False)
    assert [d.name for d in dirs] == names
    w = sample_w(G, 600, 0)
    for d in dirs:
        assert d.source == "interfacegan" and d.layers == (1, 4)
        assert float(d.vector.norm()) == pytest.approx(1.0, abs=1e-5)
        assert d.scale == pytest.approx(float(((w - w.mean(0)) @ d.vector).std()), rel=1e-3)
        assert d.info["svm_val_accuracy"] > 0.6 and d.info["positives"] == 180
    assert dirs[1].info["score_unit"] == "years" and dirs[0].info["score_unit"] == "logit"
    # Sign convention end to end: moving fresh samples along a direction raises that score.
    fresh = sample_w(G, 64, seed=5)
    with torch.no_grad():
        for d in dirs:
            before, after = (attribute_scores(clf, G.synthesis((fresh + t * d.scale * d.vector)[:, None]
                                                               .expand(-1, G.num_ws, -1)))[d.name] for t in (-2, 2))
            assert after.mean() > before.mean(), d.name
    again = interfacegan(G, clf, names, samples=600, seed=0, layers=(1, 4), progress=False)
    assert all(torch.equal(a.vector, b.vector) for a, b in zip(dirs, again))


def test_per_layer_boundaries_and_file_round_trip(G, clf, tmp_path):
    dirs = interfacegan(G, clf, ["male"], samples=300, seed=0, per_layer=True, layer_samples=300, progress=False)
    assert [d.name for d in dirs] == ["male"] + [f"male@L{k}" for k in range(G.num_ws)]
    assert [d.layers for d in dirs[1:]] == [(k, k + 1) for k in range(G.num_ws)]
    assert all(d.info["mixing"] == "crossover" and 0 <= d.info["svm_val_accuracy"] <= 1 for d in dirs[1:])
    back = load_directions(save_directions(tmp_path / "i.npz", dirs, G), G)
    assert set(back) == {d.name for d in dirs}
    assert torch.equal(back["male@L2"].vector, dirs[3].vector) and back["male"].info == dirs[0].info


def test_bad_arguments(G, clf):
    with pytest.raises(ValueError, match="unknown attribute"):
        interfacegan(G, clf, ["smile"], samples=100, progress=False)
    with pytest.raises(ValueError, match="at least 10"):
        interfacegan(G, clf, samples=5, progress=False)
    with pytest.raises(ValueError, match="outside"):
        interfacegan(G, clf, samples=100, layers=(0, 99), progress=False)


def run(*args):
    return subprocess.run([sys.executable, "-m", "ganbrush_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_directions_interfacegan(G, clf, tmp_path, capsys):
    g = save_generator(G, tmp_path / "g.safetensors")
    c = save_classifier(clf, tmp_path / "c.safetensors")
    out = run("directions", "interfacegan", "--generator", g, "--classifier", c, "--out", tmp_path / "d",
              "--samples", "200", "--names", "smiling,age")
    assert out.returncode == 0, out.stderr
    assert "smiling: layers 0-" in out.stdout and "svm val accuracy" in out.stdout
    dirs = load_directions(tmp_path / "d" / "interfacegan.npz")
    assert list(dirs) == ["smiling", "age"]
    # The error paths in-process (same main(), no interpreter start-up per case).
    from ganbrush_cli import main

    for argv, message in [
        (["directions", "interfacegan", "--generator", g, "--classifier", c, "--out", tmp_path / "d"], "--force"),
        (["directions", "interfacegan", "--generator", g, "--classifier", c, "--out", tmp_path / "e",
          "--samples", "200", "--names", "smile"], "unknown attribute"),
        (["directions", "interfacegan", "--generator", g, "--classifier", tmp_path / "none.safetensors",
          "--out", tmp_path / "e"], "no such classifier"),
        (["directions", "sefa", "--generator", g, "--out", tmp_path / "f", "--classifier", c], "only apply to"),
    ]:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


SHIPPED = Path(__file__).resolve().parents[2] / "manipulate" / "weights" / "faces64-interfacegan.npz"


@pytest.mark.skipif(not SHIPPED.is_file() or not DEFAULT_CLASSIFIER.is_file(),
                    reason="shipped InterFaceGAN directions or classifier not present")
def test_shipped_directions_fit_the_default_generator_and_move_its_scores():
    from stylegan_ops import load_generator

    G = load_generator("default")
    dirs = load_directions(SHIPPED, G)
    assert tuple(dirs) == SCORE_NAMES
    assert all(d.source == "interfacegan" and d.info["svm_val_accuracy"] > 0.75 for d in dirs.values())
    clf = load_classifier()
    w = sample_w(G, 12, seed=99)  # not the seed the boundaries were fitted on
    with torch.no_grad():
        for name in ("smiling", "male", "age"):
            d = dirs[name]
            lo, hi = (attribute_scores(clf, G.synthesis((w + t * d.scale * d.vector)[:, None].expand(-1, G.num_ws, -1)))
                      [name] for t in (-2, 2))
            assert (hi > lo).float().mean() > 0.8, name
