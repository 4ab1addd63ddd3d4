"""Paths ($GANBRUSH_HOME, $GANBRUSH_DATA, package files), image conversions and the one mask reader."""

import importlib.util
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core import images, masks, paths


def test_home_and_data_root_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANBRUSH_DATA", str(tmp_path / "data"))
    assert paths.ganbrush_home() == tmp_path / "home" and paths.data_root() == tmp_path / "data"
    monkeypatch.delenv("GANBRUSH_HOME")
    monkeypatch.delenv("GANBRUSH_DATA")
    assert paths.ganbrush_home() == Path.home() / ".cache" / "ganbrush"
    assert paths.data_root() == paths.REPO_ROOT.parent / "shared" / "data"
    assert (paths.REPO_ROOT / "ganbrush_core" / "paths.py").is_file()


def test_package_file_finds_files_without_importing_and_names_the_pip_command(monkeypatch):
    init = paths.package_file("ganbrush_core", "__init__.py", "ganbrush")
    assert init == paths.REPO_ROOT / "ganbrush_core" / "__init__.py"
    assert paths.package_file("ganbrush_core", ".", "ganbrush", directory=True).is_dir()
    with pytest.raises(paths.PackageFileError, match=r"the thing not found: run `pip install --no-deps x==1`"):
        paths.package_file("ganbrush_core", "nope.bin", "x==1", what="the thing")
    assert paths.package_dirs("ganbrush_no_such_package") == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(KeyError, match="init.py not found"):
        paths.package_file("ganbrush_core", "init.py", "x", error=KeyError)


def test_uint8_float_round_trip_and_grid(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = images.uint8_to_float(u8)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert float(images.uint8_to_float(np.full((1, 1, 3), 255, np.uint8)).max()) == 1.0
    assert np.array_equal(images.to_uint8(x), u8)
    assert np.array_equal(images.to_uint8(torch.full((1, 3, 1, 1), 5.0)), np.full((1, 1, 1, 3), 255))  # clipped
    grid = images.image_grid(x, ncols=2, pad=1)
    assert grid.size == (2 * 8 + 1, 5 + 2)
    assert np.array_equal(np.asarray(grid)[1:6, 1:8], u8[0]) and np.array_equal(np.asarray(grid)[1:6, 9:16], u8[1])
    out = images.save_image_grid(x, tmp_path / "g.png")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(images.image_grid(x)))


def test_image_files_are_exact_refuse_overwrite_and_are_0644(tmp_path):
    x = images.uint8_to_float(np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8))
    path = images.write_image(x, tmp_path / "a.png")
    assert torch.equal(images.read_image(path), x)
    with pytest.raises(FileExistsError, match="--force"):
        images.write_image(x, path)
    edges = (torch.rand(1, 1, 6, 4) > 0.5).float()
    assert torch.equal(images.read_map(images.write_map(edges, tmp_path / "e.png")), edges)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="suffix"):
        images.write_image(x, tmp_path / "a.unknown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "e.png"]


def test_masks_white_is_hole_transparent_is_kept_and_resizing(tmp_path):
    a = np.zeros((8, 8), np.uint8)
    a[:, 4:] = 200  # light grey counts as white
    rgba = np.dstack([np.full_like(a, 255)] * 3 + [np.where(a > 0, 255, 0).astype(np.uint8)])  # white, alpha = stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "stroke.png")
    Image.fromarray(a).save(tmp_path / "grey.png")
    expected = torch.zeros(1, 1, 8, 8)
    expected[..., 4:] = 1
    assert torch.equal(masks.read_mask(tmp_path / "stroke.png"), expected)  # only the opaque stroke is a hole
    assert torch.equal(masks.read_mask(tmp_path / "grey.png"), expected)
    assert torch.equal(masks.read_mask(tmp_path / "grey.png", invert=True), 1 - expected)
    small = masks.read_mask(tmp_path / "grey.png", size=4)
    assert torch.equal(small, torch.tensor([[0.0, 0, 1, 1]]).expand(4, 4)[None, None])
    assert masks.hole_ratio(expected) == 0.5
    with pytest.raises(masks.MaskError, match="no such mask"):
        masks.read_mask(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):  # also an OSError, as every missing input file
        masks.read_mask(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(masks.MaskError, match="not a readable image"):
        masks.read_mask(tmp_path / "bad.png")


def test_check_mask_rules():
    hole = torch.zeros(2, 1, 4, 6)
    hole[:, :, :2] = 1
    masks.check_mask(hole, (4, 6))
    with pytest.raises(masks.MaskError, match=r"\[N, 1, H, W\]"):
        masks.check_mask(hole[:, 0], (4, 6))
    with pytest.raises(masks.MaskError, match="mask is 6x4 but the image is 4x4"):
        masks.check_mask(hole, 4)
    with pytest.raises(masks.MaskError, match="binarise"):
        masks.check_mask(hole * 0.5, (4, 6))
    with pytest.raises(masks.MaskError, match="whole image"):
        masks.check_mask(torch.ones(1, 1, 4, 6), (4, 6))
    masks.check_mask(torch.ones(1, 1, 4, 6), (4, 6), allow_full=True)
    masks.check_mask(torch.zeros(1, 1, 4, 6), (4, 6))
    with pytest.raises(masks.MaskError, match="empty"):
        masks.check_mask(torch.zeros(1, 1, 4, 6), (4, 6), allow_empty=False)
    assert issubclass(masks.MaskError, ValueError)
