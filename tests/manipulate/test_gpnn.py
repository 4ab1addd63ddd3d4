"""GPNN retargeting (manipulate.gpnn) and its native-resolution rendering (manipulate.retarget)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganbrush_core.images import read_image, to_uint8
from ganbrush_core.metrics import sharpness
from manipulate.gpnn import (
    GPNNConfig,
    coherence,
    fold,
    gpnn,
    nearest,
    patches,
    source_coordinates,
    upsample_coordinates,
    warp,
)
from manipulate.retarget import RetargetError, add_detail, render_gpnn, retarget

FAST = GPNNConfig(iters=2, coarsest=14)


def random_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 2 - 1


def test_fold_inverts_patches():
    x = random_image(13, 17)
    torch.testing.assert_close(fold(patches(x, 5), (13, 17), 5), x)


@pytest.mark.parametrize("alpha", [None, 0.01])
def test_nearest_matches_a_brute_force_search(alpha):
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(300, 12, generator=g), torch.randn(200, 12, generator=g)
    d = torch.cdist(q, k).square() / 12
    if alpha is not None:
        d = d / (d.amin(0, keepdim=True) + alpha)
    assert torch.equal(nearest(q, k, alpha, chunk=64), d.argmin(1))


def test_completeness_brings_in_source_patches_that_plain_matching_leaves_out():
    # Queries all near key 0; key 1 a little farther. Plain matching uses key 0 only; with the
    # normalisation, a key's distance counts relative to its own best query.
    q = torch.tensor([[0.0], [0.1], [0.9]])
    k = torch.tensor([[0.0], [2.0]])
    assert nearest(q, k, None).tolist() == [0, 0, 0]
    assert nearest(q, k, 0.01).tolist() == [0, 0, 1]


def test_the_photo_at_its_own_shape_is_reconstructed_exactly(photos_dir):
    x = F.interpolate(read_image(photos_dir / "laos.jpg"), size=(32, 48), mode="area")
    result = gpnn(x, (32, 48), FAST)
    torch.testing.assert_close(result.image, x, atol=1e-5, rtol=0)
    coords = source_coordinates(result.source_of, (32, 48), (32, 48), FAST.patch)
    grid = torch.stack(torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij"), -1)
    assert torch.equal(coords, grid)


def test_output_has_the_shape_asked_and_is_made_of_source_patches():
    x = random_image(24, 24, seed=3)
    result = gpnn(x, (24, 40), FAST)
    assert result.image.shape == (1, 3, 24, 40)
    assert result.source_of.shape == ((24 - 6) * (40 - 6),)
    # The last round copies source patches: folding them again gives the image itself.
    torch.testing.assert_close(fold(patches(x, 7)[result.source_of], (24, 40), 7), result.image)


def test_warp_and_upsampled_coordinates_copy_a_block_sharply():
    photo = random_image(40, 60, seed=4)
    coords = torch.stack(torch.meshgrid(torch.arange(10.0), torch.arange(15.0), indexing="ij"), -1)
    fine = upsample_coordinates(coords, (4.0, 4.0), (40, 60))
    # Identity coordinates at working resolution copy the photo itself at 4x the resolution.
    torch.testing.assert_close(warp(photo, fine, (10, 15)), photo, atol=1e-5, rtol=0)


def test_coherence_tells_regions_copied_whole_from_pieced_ones():
    grid = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij"), -1)
    shifted = grid + torch.tensor([3.0, 5.0])  # one block copied whole from elsewhere
    assert torch.equal(coherence(shifted), torch.ones(6, 8))
    pieced = shifted.clone()
    pieced[:, 4:] = torch.randint(0, 40, (6, 4, 2), generator=torch.Generator().manual_seed(0)).float()
    c = coherence(pieced)
    assert torch.equal(c[:, :3], torch.ones(6, 3))  # still whole, away from the seam
    assert (c[:, 3] < 1).all() and (c[:, 3] > 0).all()  # the seam: some links broken
    assert c[:, 5:7].max() <= 0.25  # pixels from unrelated places: (almost) no link holds


def test_detail_is_withheld_where_the_mapping_is_untrusted():
    up, fine = random_image(16, 16, seed=5) * 0.5, random_image(16, 16, seed=6) * 0.2
    out_w = random_image(4, 4, seed=7)
    trust = torch.ones(1, 1, 4, 4)
    full = add_detail(up, fine, out_w, out_w, trust)
    torch.testing.assert_close(full, (up + fine).clamp(-1, 1))
    none = add_detail(up, fine, out_w, out_w, torch.zeros(1, 1, 4, 4))
    torch.testing.assert_close(none, up.clamp(-1, 1))
    trust[..., 2:] = 0  # right half untrusted: the left edge keeps all the detail, the right edge none
    half = add_detail(up, fine, out_w, out_w, trust)
    torch.testing.assert_close(half[..., :2], full[..., :2])
    torch.testing.assert_close(half[..., -2:], none[..., -2:])


def test_native_rendering_keeps_the_photos_detail(photos_dir):
    photo = read_image(photos_dir / "laos.jpg")
    photo = F.interpolate(photo, size=(160, 240), mode="area")
    wide = render_gpnn(photo, (300, 160), working_size=48, cfg=FAST)
    plain = render_gpnn(photo, (300, 160), working_size=48, cfg=FAST, detail=False)
    assert wide.shape == plain.shape == (1, 3, 160, 300)
    assert wide.min() >= -1 and wide.max() <= 1
    s_photo, s_wide, s_plain = (sharpness(to_uint8(t)[0]) for t in (photo, wide, plain))
    assert s_wide > 0.5 * s_photo and s_wide > 3 * s_plain, (s_photo, s_wide, s_plain)


def test_retarget_takes_the_method_and_refuses_an_unknown_one(photos_dir):
    photo = F.interpolate(read_image(photos_dir / "laos.jpg"), size=(64, 96), mode="area")
    out = retarget(photo, (120, 64), method="gpnn", working_size=32)
    assert out.shape == (1, 3, 64, 120)
    assert np.isfinite(out.numpy()).all()
    with pytest.raises(RetargetError, match="ingan, gpnn"):
        retarget(photo, (120, 64), method="seams")
