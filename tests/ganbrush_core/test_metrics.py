"""PSNR and SSIM against scikit-image on real photos (the CelebA held-out faces and skimage's
own test images), plus the [-1, 1] <-> uint8 data-range convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganbrush_core.images import uint8_to_float as to_api
from ganbrush_core.metrics import MetricInputError, psnr, ssim
from ganbrush_core.paths import data_root

# Used at collection time (parametrize), so the path function rather than the fixture.
CELEBA = data_root() / "faces" / "celeba-10k"


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def distorted_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(reference, distorted) pairs: noise, blur-like shift, JPEG, a colour cast, on real images."""
    gen = np.random.default_rng(0)
    refs = [skdata.astronaut()[::4, ::4], skdata.chelsea()[::3, ::3], skdata.coffee()[::3, ::3]]
    if CELEBA.is_dir():
        refs.append(np.asarray(Image.open(CELEBA / "009001.jpg").convert("RGB")))
    pairs = []
    for ref in refs:
        x = to_api(ref)
        noisy = (x + torch.from_numpy(gen.normal(0, 0.1, x.shape)).float()).clamp(-1, 1)
        shifted = torch.roll(x, shifts=(1, 2), dims=(2, 3))
        cast = (x * 0.8 + torch.tensor([0.1, -0.05, 0.0]).view(1, 3, 1, 1)).clamp(-1, 1)
        pairs += [(x, noisy), (x, shifted), (x, cast)]
    return pairs


@pytest.mark.parametrize("pair", distorted_pairs(), ids=lambda p: f"{tuple(p[0].shape[-2:])}")
def test_ssim_matches_skimage(pair):
    x, y = pair
    expected = structural_similarity(to_hwc(x), to_hwc(y), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=2.0, channel_axis=-1)
    got = ssim(x, y)
    assert got.shape == (1,) and got.dtype == torch.float32
    assert abs(float(got[0]) - expected) < 1e-4
    assert expected < 0.999  # the distortion is real, so the comparison is not of two ones


def test_ssim_batch_is_per_image_and_identity_is_one():
    x, y = distorted_pairs()[0]
    batch_x, batch_y = torch.cat([x, x]), torch.cat([y, x])
    got = ssim(batch_x, batch_y)
    assert got.shape == (2,)
    assert torch.allclose(got[0], ssim(x, y)[0]) and float(got[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(got[0]) < float(got[1])


def test_psnr_matches_skimage_and_uint8_convention():
    ref = skdata.chelsea()[::3, ::3]
    gen = np.random.default_rng(1)
    dist = np.clip(ref.astype(np.int16) + gen.integers(-12, 13, ref.shape), 0, 255).astype(np.uint8)
    expected = peak_signal_noise_ratio(ref, dist, data_range=255)  # the uint8 definition
    got = psnr(to_api(ref), to_api(dist))
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(expected, abs=1e-4)


def test_psnr_known_value_and_identity():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.2  # MSE 0.04 in [-1, 1] units -> 10 log10(4 / 0.04) = 20 dB
    got = psnr(x, y)
    assert float(got[0]) == pytest.approx(20.0, abs=1e-5)
    assert torch.isinf(got[1])


def test_bad_inputs_raise_one_line_errors():
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(MetricInputError, match="one shape"):
        psnr(x, torch.zeros(1, 3, 16, 15))
    with pytest.raises(MetricInputError, match="at least 11 px"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))
    with pytest.raises(ValueError):
        ssim(x[0], x[0])
