"""Seam carving and the stretch / centre-crop baselines."""

import numpy as np
import pytest

from manipulate.seam_carving import center_crop, energy, seam_carve, stretch, vertical_seam


def scene(h: int = 40, w: int = 60) -> np.ndarray:
    """Flat grey with two striped dark posts (columns 10-13 and 44-47) and a checkered red square:
    textured, so every pixel of them has gradient energy."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[:, 10:14] = img[:, 44:48] = np.array([20, 60, 20, 60], np.uint8)[None, :, None]
    checker = (np.indices((10, 10)).sum(0) % 2).astype(bool)
    img[15:25, 25:35] = np.where(checker[..., None], (220, 30, 30), (160, 30, 30))
    return img


def posts(img: np.ndarray) -> np.ndarray:
    return (img < 100).all(-1)


def red(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] >= 150) & (img[..., 1] < 100)


def test_seam_follows_the_cheapest_connected_path():
    cost = np.ones((5, 6))
    path = [4, 3, 3, 2, 1]  # 8-connected: moves by at most one column per row
    cost[np.arange(5), path] = 0
    assert vertical_seam(cost).tolist() == path


def test_narrowing_removes_flat_pixels_and_keeps_the_objects():
    img = scene()
    out = seam_carve(img, (42, 40))
    assert out.shape == (40, 42, 3) and out.dtype == np.uint8
    # Both posts keep their full width and the red square all its pixels: only flat grey went.
    assert (posts(out).sum(1) == 8).all()
    assert red(out).sum() == 100
    assert np.abs(energy(out)).sum() >= 0.9 * np.abs(energy(img)).sum()


def test_widening_duplicates_flat_seams_and_keeps_the_objects_sharp():
    img = scene()
    for width in (90, 200):  # 200: more than doubled, in stages
        out = seam_carve(img, (width, 40))
        assert out.shape == (40, width, 3)
        assert (posts(out).sum(1) == 8).all()
        assert red(out).sum() == 100


def test_heights_change_on_the_transposed_image():
    img = scene().transpose(1, 0, 2).copy()  # posts now horizontal
    out = seam_carve(img, (40, 45))
    assert out.shape == (45, 40, 3) and (posts(out).sum(0) == 8).all()
    both = seam_carve(scene(), (50, 52))
    assert both.shape == (52, 50, 3)


def test_stretch_and_crop_baselines():
    img = scene()
    assert stretch(img, (90, 20)).shape == (20, 90, 3)
    crop = center_crop(img, (30, 40))
    np.testing.assert_array_equal(crop, img[:, 15:45])
    with pytest.raises(ValueError, match="cannot enlarge"):
        center_crop(img, (61, 40))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        seam_carve(np.zeros((4, 4, 3), np.float32), (3, 4))
    with pytest.raises(ValueError, match="at least 1x1"):
        stretch(scene(), (0, 5))
