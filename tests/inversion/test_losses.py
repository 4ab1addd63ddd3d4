"""MSE and the StyleGAN2 projector's noise regularisation / renormalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inversion.losses import mse, noise_regularization, normalize_noises_


def test_mse_is_per_image_mean_square():
    x = torch.zeros(3, 3, 4, 4)
    y = x.clone()
    y[1] += 0.5
    y[2, 0] += 1.0  # one channel of three
    assert torch.allclose(mse(x, y), torch.tensor([0.0, 0.25, 1 / 3]))
    assert torch.allclose(mse(y, x), mse(x, y))


def test_mse_gradient_and_shape_errors():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randn(2, 3, 8, 8)
    mse(x, y).sum().backward()
    assert torch.allclose(x.grad, 2 * (x - y).detach() / (3 * 8 * 8))
    with pytest.raises(ValueError, match="one shape"):
        mse(x, y[:1])


def generator_like_noises(n: int, gen: torch.Generator, smooth: bool = False) -> list[torch.Tensor]:
    """Maps at 4, 8, 8, ..., 64 px like a 64 px StyleGAN2; ``smooth`` upsamples 4 px noise instead."""
    sizes = [4] + [r for r in (8, 16, 32, 64) for _ in range(2)]
    maps = []
    for r in sizes:
        if smooth:
            m = F.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(r, r), mode="bilinear",
                              align_corners=False)
        else:
            m = torch.randn(n, 1, r, r, generator=gen)
        maps.append(m)
    normalize_noises_(maps)
    return maps


def official_single_image(noises: list[torch.Tensor]) -> float:
    """The projector's loop written out for a batch of one, as the paper's code does it."""
    reg = 0.0
    for v in noises:
        size = v.shape[2]
        while True:
            reg += float((v * torch.roll(v, 1, 3)).mean()) ** 2 + float((v * torch.roll(v, 1, 2)).mean()) ** 2
            if size <= 8:
                break
            v = v.reshape(1, 1, size // 2, 2, size // 2, 2).mean(dim=(3, 5))
            size //= 2
    return reg


def test_noise_regularization_white_vs_smooth():
    gen = torch.Generator().manual_seed(0)
    white = noise_regularization([torch.randn(1, 1, 256, 256, generator=gen)])
    smooth = noise_regularization(generator_like_noises(1, gen, smooth=True))
    assert white.ndim == 0
    assert float(white) < 1e-3
    assert float(smooth) > 1.0  # neighbouring pixels of an upsampled map are almost equal
    assert float(smooth) > 1000 * float(white)


def test_noise_regularization_matches_official_loop_and_sums_images():
    gen = torch.Generator().manual_seed(1)
    a = generator_like_noises(1, gen, smooth=True)
    b = generator_like_noises(1, gen)
    assert float(noise_regularization(a)) == pytest.approx(official_single_image(a), rel=1e-5)
    batch = [torch.cat([ma, mb]) for ma, mb in zip(a, b)]
    expected = official_single_image(a) + official_single_image(b)
    assert float(noise_regularization(batch)) == pytest.approx(expected, rel=1e-5)


def test_noise_regularization_gradient_reduces_it():
    gen = torch.Generator().manual_seed(2)
    noises = [m.requires_grad_(True) for m in generator_like_noises(2, gen, smooth=True)]
    before = noise_regularization(noises)
    before.backward()
    with torch.no_grad():
        for m in noises:
            m -= 0.1 * m.grad
    assert float(noise_regularization(noises).detach()) < float(before.detach())


def test_normalize_noises_in_place_per_image():
    gen = torch.Generator().manual_seed(3)
    maps = [torch.randn(3, 1, r, r, generator=gen) * torch.tensor([0.5, 2.0, 7.0]).view(3, 1, 1, 1) + 3
            for r in (4, 16)]
    ids = [id(m) for m in maps]
    normalize_noises_(maps)
    assert [id(m) for m in maps] == ids
    for m in maps:
        assert torch.allclose(m.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
        assert torch.allclose(m.std(dim=(1, 2, 3), correction=0), torch.ones(3), atol=1e-5)


def test_noise_inputs_are_checked():
    with pytest.raises(ValueError, match="no noise maps"):
        noise_regularization([])
    with pytest.raises(ValueError, match=r"\[N, 1, r, r\]"):
        normalize_noises_([torch.zeros(1, 3, 8, 8)])
