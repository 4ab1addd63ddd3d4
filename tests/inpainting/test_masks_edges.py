"""Mask files (any mode, white = hole, 50% threshold), procedural masks, the irregular evaluation set,
and Canny edges."""


import numpy as np
import pytest
import torch
from PIL import Image
from skimage.feature import canny

from ganbrush_core.masks import MaskError, hole_ratio, read_mask
from ganbrush_core.paths import data_root
from inpainting import canny_edges, load_irregular_mask, random_mask
from inpainting.masks import IRREGULAR_BINS, irregular_mask_bin, irregular_mask_indices

DATA = data_root()
IRREGULAR = DATA / "masks" / "irregular-12k"
needs_masks = pytest.mark.skipif(not IRREGULAR.is_dir(), reason=f"irregular masks not found at {IRREGULAR}")


def _pattern() -> np.ndarray:
    """8x8 uint8: left half 0/127 (known), right half 128/255 (hole)."""
    a = np.zeros((8, 8), np.uint8)
    a[:4, :4], a[4:, :4], a[:4, 4:], a[4:, 4:] = 0, 127, 128, 255
    return a


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "RGBA", "I;16"])
def test_read_mask_any_mode_white_is_hole(tmp_path, mode):
    a = _pattern()
    if mode == "I;16":
        img = Image.fromarray(a.astype(np.uint16) * 257)
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([a, a, a, np.full_like(a, 255)]), "RGBA")
    else:
        img = Image.fromarray(a).convert(mode)
    path = tmp_path / f"m_{mode.replace(';', '')}.png"
    img.save(path)
    m = read_mask(path)
    assert m.shape == (1, 1, 8, 8) and m.dtype == torch.float32
    expected = torch.zeros(8, 8)
    expected[:, 4:] = 1
    assert torch.equal(m[0, 0], expected)
    assert torch.equal(read_mask(path, invert=True)[0, 0], 1 - expected)


def test_transparent_pixels_are_not_holes(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the top row is opaque
    rgba[0, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert read_mask(tmp_path / "t.png")[0, 0].sum(1).tolist() == [4, 0, 0, 0]
    Image.fromarray(np.zeros((4, 4), bool)).save(tmp_path / "b.png")  # mode "1"
    assert hole_ratio(read_mask(tmp_path / "b.png")) == 0


def test_unreadable_and_missing_masks(tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(MaskError, match="x.png"):
        read_mask(tmp_path / "x.png")
    with pytest.raises(MaskError, match="nope.png: no such mask file"):
        read_mask(tmp_path / "nope.png")


def test_hole_ratio():
    m = torch.zeros(2, 1, 4, 4)
    m[0, :, :2] = 1
    assert hole_ratio(m) == 0.25


def test_random_masks_are_seeded_binary_and_in_range():
    a, b, c = random_mask(64, 96, 3), random_mask(64, 96, 3), random_mask(64, 96, 4)
    assert a.shape == (1, 64, 96) and torch.equal(a, b) and not torch.equal(a, c)
    ratios = []
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = random_mask(64, 64, rng, ratio_range=(0.05, 0.5))
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        ratios.append(hole_ratio(m))
    assert all(0.05 <= r <= 0.5 for r in ratios) and len(set(ratios)) > 10


def test_irregular_bins_by_index():
    assert irregular_mask_bin(0) == 0 and irregular_mask_bin(1999) == 0 and irregular_mask_bin(2000) == 1
    assert irregular_mask_bin(11999) == 5 and irregular_mask_indices(5) == range(10000, 12000)
    with pytest.raises(MaskError):
        irregular_mask_bin(12000)
    with pytest.raises(MaskError):
        irregular_mask_indices(6)


@needs_masks
@pytest.mark.parametrize("index", [0, 3999, 6000, 11999])
def test_irregular_masks_have_their_bins_hole_ratio(index):
    lo, hi = IRREGULAR_BINS[irregular_mask_bin(index)]
    full = load_irregular_mask(index, root=DATA)
    assert full.shape == (1, 1, 512, 512)
    assert lo - 0.01 <= hole_ratio(full) <= hi + 0.01
    small = load_irregular_mask(index, size=64, root=DATA)
    assert small.shape == (1, 1, 64, 64) and abs(hole_ratio(small) - hole_ratio(full)) < 0.03


def test_canny_matches_scikit_image_and_ignores_the_hole():
    gray = torch.zeros(1, 1, 48, 48)
    gray[..., :, 24:] = 1  # a vertical step at x = 24
    edges = canny_edges(gray)
    assert torch.equal(edges[0, 0], torch.from_numpy(canny(gray[0, 0].double().numpy(), sigma=2)).float())
    assert edges[0, 0, 10:40].sum(0).argmax().item() in (23, 24)
    mask = torch.zeros_like(gray)
    mask[..., 16:32, 16:32] = 1
    masked = canny_edges(gray, mask)
    assert masked[mask > 0].sum() == 0 and masked[mask == 0].sum() > 0
