"""Label maps: palette, files, flips, resizing, and the parts drawn from landmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from manipulate import labels as L


def _blobs(size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, L.NUM_CLASSES, (size // 4, size // 4)).repeat(4, 0).repeat(4, 1).astype(np.uint8)


def test_palette_has_one_distinct_colour_per_class():
    assert L.PALETTE.shape == (L.NUM_CLASSES, 3)
    d = np.sqrt(((L.PALETTE[:, None].astype(float) - L.PALETTE[None].astype(float)) ** 2).sum(-1))
    assert d[~np.eye(L.NUM_CLASSES, dtype=bool)].min() > 100  # far apart: painted maps snap back unambiguously


def test_colour_and_index_files_round_trip(tmp_path):
    labels = _blobs()
    colour, index = L.write_label_map(labels, tmp_path / "map.png", tmp_path / "map.index.png")
    assert np.array_equal(L.read_label_map(colour), labels)
    assert np.array_equal(L.read_label_map(index), labels)
    assert Image.open(index).mode == "L"
    with pytest.raises(FileExistsError):
        L.write_label_map(labels, tmp_path / "map.png")


def test_a_palette_png_with_our_palette_is_read_as_indices(tmp_path):
    labels = _blobs()
    im = Image.fromarray(labels, mode="P")
    im.putpalette(L.PALETTE.ravel().tolist())
    im.save(tmp_path / "p.png")
    assert np.array_equal(L.read_label_map(tmp_path / "p.png"), labels)


def test_antialiased_brush_edges_snap_to_the_nearest_class():
    labels = _blobs()
    rgb = L.colorize(labels).astype(np.float32)
    soft = (0.85 * rgb + 0.15 * np.roll(rgb, 1, axis=1)).round().astype(np.uint8)  # a soft brush's edge pixels
    assert (L.snap_colors(soft) == labels).mean() > 0.99


def test_a_photo_is_not_taken_for_a_label_map(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "photo.png")
    with pytest.raises(L.LabelMapError, match="far from every class colour"):
        L.read_label_map(tmp_path / "photo.png")
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(tmp_path / "grey.png")
    with pytest.raises(L.LabelMapError, match="outside"):
        L.read_label_map(tmp_path / "grey.png")


def test_flip_mirrors_and_swaps_left_and_right():
    labels = np.zeros((4, 6), np.uint8)
    labels[1, 0] = L.CLASS_INDEX["left_eye"]
    labels[2, 1] = L.CLASS_INDEX["right_brow"]
    flipped = L.flip_labels(labels)
    assert flipped[1, 5] == L.CLASS_INDEX["right_eye"] and flipped[2, 4] == L.CLASS_INDEX["left_brow"]
    assert np.array_equal(L.flip_labels(flipped), labels)
    assert torch.equal(L.flip_labels(torch.from_numpy(labels)), torch.from_numpy(flipped))


def test_shrinking_keeps_thin_parts_by_majority():
    labels = np.full((64, 64), L.CLASS_INDEX["skin"], np.uint8)
    labels[32:36, 8:56] = L.CLASS_INDEX["upper_lip"]  # a 4 px line: 1 px at 16 px
    small = L.resize_labels(labels, 16)
    assert (small == L.CLASS_INDEX["upper_lip"]).sum() == 12
    assert np.array_equal(L.resize_labels(small, 64)[::4, ::4], small)


def test_one_hot():
    labels = torch.from_numpy(_blobs())[None].long()
    oh = L.one_hot(labels)
    assert oh.shape == (1, L.NUM_CLASSES, 32, 32) and torch.equal(oh.argmax(1), labels)


@pytest.fixture(scope="module")
def portrait(photos_dir):
    """The portrait's face aligned at 64 px and its landmarks in aligned px."""
    from inversion import align_face, detect_faces, load_photo
    from manipulate.face_parser import aligned_landmarks

    photo = load_photo(photos_dir / "woman_portrait.jpg")
    aligned = align_face(photo, detect_faces(photo)[0], 64)
    return aligned.image, aligned_landmarks(aligned)


def test_landmark_parts_sit_where_the_landmarks_are(portrait):
    _, lm = portrait
    parts = L.landmark_parts(lm, 64)
    present = {L.CLASSES[i] for i in np.unique(parts) if i}
    assert present >= {"left_brow", "right_brow", "left_eye", "right_eye", "nose", "upper_lip", "lower_lip"}
    for name, points in (("left_eye", lm[36:42]), ("right_eye", lm[42:48]), ("nose", lm[30:31])):
        x, y = np.round(points.mean(0)).astype(int)
        assert parts[y, x] == L.CLASS_INDEX[name]
    x, y = np.round(lm[8]).astype(int)  # the chin: skin, not a part
    assert parts[max(y - 1, 0), x] == 0
    hull = L.face_hull(lm, 64)
    assert hull[parts > 0].mean() > 0.97 and 0.2 < hull.mean() < 0.8
    big = L.landmark_parts(lm, 256, res=64)  # the same parts, drawn sharper at 4x
    assert (L.resize_labels(big, 64) == parts).mean() > 0.97


def test_presets_edit_the_parts_they_name(portrait):
    _, lm = portrait
    m = L.compose(np.where(L.face_hull(lm, 128, 64) > 0, 1, 0).astype(np.uint8), L.landmark_parts(lm, 128, 64))
    mouth = np.isin(m, [L.CLASS_INDEX[c] for c in L.MOUTH])
    wide = np.isin(L.PRESETS["widen mouth"](m), [L.CLASS_INDEX[c] for c in L.MOUTH])
    cols = lambda a: np.nonzero(a.any(0))[0]  # noqa: E731
    assert np.ptp(cols(wide)) == pytest.approx(1.3 * np.ptp(cols(mouth)), abs=2)
    (y0, x0), (y1, x1) = np.argwhere(wide).min(0), np.argwhere(wide).max(0)
    outside = np.ones_like(wide)
    outside[y0:y1 + 1, x0:x1 + 1] = False  # nothing changes beyond the widened mouth's box
    assert np.array_equal(L.PRESETS["widen mouth"](m)[outside], m[outside])
    eyes = L.PRESETS["bigger eyes"](m)
    for c in L.EYES:  # each eye grows about its own centre: still where it was
        before, after = np.argwhere(m == L.CLASS_INDEX[c]), np.argwhere(eyes == L.CLASS_INDEX[c])
        assert len(after) > 1.4 * len(before) and np.abs(after.mean(0) - before.mean(0)).max() < 1.5
    assert not np.isin(L.PRESETS["remove brows"](m), [L.CLASS_INDEX[c] for c in L.BROWS]).any()
    with pytest.raises(L.LabelMapError, match="none of"):
        L.scale_parts(np.zeros((8, 8), np.uint8), L.MOUTH, 1.3)
