"""Face data: the held-out split on the real shared listing, framing, the packed format and
``FaceDataset``."""

import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ganbrush_core import faces
from ganbrush_core.faces import FaceDataError, FaceDataset, build_face_dataset, is_held_out, split_files


def test_celeba_rule_by_number_and_name():
    assert not is_held_out("celeba", 1)
    assert not is_held_out("celeba", 9000)
    assert is_held_out("celeba", 9001)
    assert is_held_out("celeba", "010000.jpg")
    assert not is_held_out("celeba", "009000.jpg")
    with pytest.raises(ValueError):
        is_held_out("celeba", 10001)
    with pytest.raises(ValueError, match="unknown face source"):
        is_held_out("ffhq", 1)


def test_utkface_rule_by_index():
    assert [i for i in range(45) if is_held_out("utkface", i)] == [0, 20, 40]


def test_split_counts_and_disjointness_on_the_real_listing(face_data_root):
    for source, total, held in (("celeba", 10_000, 1000), ("utkface", 9780, 489)):
        names = faces.list_source_files(source, face_data_root)
        train, heldout = split_files(source, "train", face_data_root), split_files(source, "heldout", face_data_root)
        assert len(names) == total
        assert len(heldout) == held and len(train) == total - held
        assert not set(train) & set(heldout) and set(train) | set(heldout) == set(names)
        assert not any(is_held_out(source, n, face_data_root) for n in train)
        assert all(is_held_out(source, n, face_data_root) for n in heldout)
    assert split_files("celeba", "heldout", face_data_root)[0] == "009001.jpg"
    utk = sorted(faces.list_source_files("utkface", face_data_root))
    assert split_files("utkface", "heldout", face_data_root) == utk[::20]


def test_held_out_faces_alternate_sources_in_a_fixed_order(face_data_root):
    from PIL import Image

    got = faces.held_out_faces(3, 16, face_data_root)
    assert got.shape == (3, 3, 16, 16) and got.dtype == torch.float32
    assert -1 <= float(got.min()) and float(got.max()) <= 1
    utk_first = split_files("utkface", "heldout", face_data_root)[0]
    expected = faces.frame_face(Image.open(face_data_root / "faces" / "utkface" / utk_first), "utkface", 16)
    np.testing.assert_array_equal(((got[1] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(), expected)
    total = sum(len(split_files(s, "heldout", face_data_root)) for s in ("celeba", "utkface"))
    with pytest.raises(ValueError, match=f"there are {total} held-out faces"):
        faces.held_out_faces(total + 1, 16, face_data_root)


def test_framing_puts_both_sources_eyes_in_the_same_place():
    # The boxes come from measured mean landmarks; check the arithmetic lands both sources' eyes
    # on the same output position and scale (within 5% of the side).
    out = {}
    for s, g in faces.GEOMETRY.items():
        left, top, right, _ = g.box()
        side = right - left
        out[s] = ((g.eye_center[0] - left) / side, (g.eye_center[1] - top) / side, g.eye_distance / side)
    np.testing.assert_allclose(out["celeba"], out["utkface"], atol=0.05)
    # UTKFace's box lies inside its 200x200 picture: no invented padding for half of the data.
    left, top, right, bottom = faces.GEOMETRY["utkface"].box()
    assert left >= 0 and top >= 0 and right <= 200 and bottom <= 200


def test_frame_face_pads_a_box_outside_the_picture():
    from PIL import Image

    img = Image.fromarray(np.full((109, 89, 3), 200, np.uint8))
    framed = faces.frame_face(img, "celeba", 32, margin=6.0)  # far larger than the picture
    assert framed.shape == (32, 32, 3) and framed.dtype == np.uint8
    assert np.abs(framed.astype(int) - 200).max() <= 2  # a flat picture stays flat, no black border


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, face_data_root) -> Path:
    out = tmp_path_factory.mktemp("faces") / "train64"
    build_face_dataset(out, res=64, split="train", data_root=face_data_root, limit=12, progress=False)
    return out


def test_build_writes_packed_images_meta_report_and_sheet(small_set, face_data_root):
    images = np.load(small_set / "images.npy", mmap_mode="r")
    assert images.shape == (24, 64, 64, 3) and images.dtype == np.uint8
    meta = json.loads((small_set / "meta.json").read_text())
    assert meta["res"] == 64 and meta["split"] == "train" and meta["sources"] == ["celeba", "utkface"]
    assert meta["counts"] == {"celeba": 12, "utkface": 12} and len(meta["files"]) == 24
    assert meta["files"][0] == "celeba/000001.jpg"
    assert not any(is_held_out(f.split("/")[0], f.split("/")[1], face_data_root) for f in meta["files"])
    assert (small_set / "contact_sheet.png").stat().st_size > 0
    for name in ("images.npy", "meta.json", "report.md", "contact_sheet.png"):  # readable by everyone
        assert stat.S_IMODE((small_set / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in small_set.iterdir()) == ["contact_sheet.png", "images.npy", "meta.json", "report.md"]
    assert "| celeba | 12 |" in (small_set / "report.md").read_text()
    assert 40 < images.mean() < 220 and images.std() > 20  # real pictures, not blank


def test_build_refuses_a_non_empty_dir_unless_forced(small_set, tmp_path, face_data_root):
    with pytest.raises(FileExistsError, match="--force"):
        build_face_dataset(small_set, res=64, data_root=face_data_root, limit=2, progress=False)
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_face_dataset(tmp_path, res=64, data_root=face_data_root, limit=2, progress=False)
    build_face_dataset(tmp_path, res=64, split="heldout", data_root=face_data_root, limit=2, force=True, progress=False)
    utk = [f"utkface/{n}" for n in split_files("utkface", "heldout", face_data_root)[:2]]
    assert json.loads((tmp_path / "meta.json").read_text())["files"] == ["celeba/009001.jpg", "celeba/009002.jpg", *utk]


def test_128px_is_utkface_only(tmp_path, face_data_root):
    with pytest.raises(ValueError, match="CelebA"):
        build_face_dataset(tmp_path / "a", res=128, data_root=face_data_root, limit=2, progress=False)
    assert not (tmp_path / "a").exists()
    r = build_face_dataset(tmp_path / "b", res=128, sources=("utkface",), data_root=face_data_root, limit=3,
                           progress=False)
    assert r.counts == {"utkface": 3}
    assert np.load(tmp_path / "b" / "images.npy", mmap_mode="r").shape == (3, 128, 128, 3)
    with pytest.raises(ValueError, match="power of two"):
        build_face_dataset(tmp_path / "c", res=48, data_root=face_data_root, limit=2, progress=False)


def test_face_dataset_range_shape_and_flip(small_set):
    ds = FaceDataset(small_set)
    raw = np.load(small_set / "images.npy", mmap_mode="r")
    assert len(ds) == 24
    x = ds[3]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert -1 <= x.min() and x.max() <= 1
    expected = torch.from_numpy(raw[3].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    torch.testing.assert_close(x, expected)

    flipping = FaceDataset(small_set, xflip=True)
    torch.manual_seed(0)
    seen = {"same": 0, "flipped": 0}
    for _ in range(40):
        y = flipping[3]
        if torch.equal(y, expected):
            seen["same"] += 1
        else:
            torch.testing.assert_close(y, expected.flip(-1))
            seen["flipped"] += 1
    assert seen["same"] > 5 and seen["flipped"] > 5


def test_face_dataset_rejects_a_non_dataset_dir(tmp_path):
    with pytest.raises(FaceDataError, match="ganbrush data faces"):
        FaceDataset(tmp_path)
