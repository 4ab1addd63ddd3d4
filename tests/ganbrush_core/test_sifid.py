"""SIFID (single-image FID) on the FID Inception's first-pool layer."""

import pytest
import torch
import torch.nn.functional as F

from ganbrush_core.backbones import BackboneWeightsError
from ganbrush_core.fid import SIFID_DIM, EarlyInception, sifid
from ganbrush_core.images import read_image


@pytest.fixture(scope="module")
def net():
    try:
        return EarlyInception()
    except BackboneWeightsError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def photo(photos_dir):
    image = read_image(photos_dir / "laos.jpg")
    return F.interpolate(image, size=(96, 144), mode="bilinear", antialias=True, align_corners=False)


def test_features_are_a_64_channel_map_at_a_quarter_of_the_size(net, photo):
    f = net(photo)
    assert f.shape == (1, SIFID_DIM, 22, 34) and torch.isfinite(f).all()
    with pytest.raises(ValueError, match="at least 16 px"):
        net(photo[..., :8, :])


def test_sifid_is_zero_for_the_same_image_and_grows_with_damage(net, photo):
    assert abs(sifid(photo, photo, net)) < 1e-6
    flipped = sifid(photo, photo.flip(-1), net)  # the same patches, elsewhere
    blurred = sifid(photo, F.avg_pool2d(photo, 5, 1, 2, count_include_pad=False), net)
    torch.manual_seed(0)
    noisy = sifid(photo, (photo + 0.3 * torch.randn_like(photo)).clamp(-1, 1), net)
    assert 0 <= flipped < blurred < noisy
    # Stretching changes the patch statistics; the images need not share a size.
    stretched = F.interpolate(photo, size=(96, 216), mode="bilinear", align_corners=False)
    assert sifid(photo, stretched, net) > flipped
