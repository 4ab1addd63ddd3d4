"""``ganbrush compare inpainting``: held-out faces x irregular-mask bins, and a user's own image
and mask folders (any sizes, paired by name, one row per hole-ratio bin)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganbrush_cli
from ganbrush_compare.inpainting import (
    Variant,
    as_variant,
    folder_images,
    folder_pairs,
    hole_bin,
    irregular_pairs,
    paired_masks,
    parse_bins,
)
from inpainting import CompletionNetwork, GlcicConfig, Method, glcic_checkpoints, glcic_inpaint, save_glcic
from inpainting.masks import irregular_mask_indices, load_irregular_mask


def run(capsys, *args) -> tuple[int, str, str]:
    rc = ganbrush_cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_outputs(out: Path) -> tuple[str, list[dict], dict]:
    with open(out / "inpainting.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return (out / "inpainting.md").read_text(), rows, json.loads((out / "inpainting.json").read_text())


@pytest.fixture(scope="module")
def user_folders(tmp_path_factory, data_root) -> tuple[Path, Path]:
    """EdgeConnect's CelebA examples (256 px) with their masks, plus a 120x90 picture of another
    size whose mask is drawn at twice its size with a 50% hole; one extra mask without an image."""
    examples = data_root / "inpainting-examples" / "celeba"
    images, masks = tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("masks")
    for name in ("celeba_01.png", "celeba_02.png", "celeba_03.png"):
        (images / name).write_bytes((examples / "images" / name).read_bytes())
        (masks / name).write_bytes((examples / "masks" / name).read_bytes())
    with Image.open(examples / "images" / "celeba_04.png") as im:
        im.convert("RGB").resize((120, 90)).save(images / "small.jpg")
    hole = np.zeros((180, 240), np.uint8)
    hole[:, :120] = 255
    Image.fromarray(hole).save(masks / "small.png")
    Image.fromarray(hole).save(masks / "unused.png")
    return images, masks


def test_user_images_and_masks(capsys, tmp_path, user_folders):
    images, masks = user_folders
    out = tmp_path / "cmp"
    rc, stdout, err = run(capsys, "compare", "inpainting", "--images", images, "--masks", masks,
                          "--methods", "telea,edgeconnect", "--no-fid", "--out", out, "--device", "cpu")
    assert rc == 0, err
    md, rows, data = read_outputs(out)
    assert md in stdout and "| mask bin | hole | images | method | L1 | PSNR | SSIM | LPIPS | FID | ms/img |" in md
    # Each pair lands in the bin of its own hole ratio; the bins come in hole order.
    pairs = folder_pairs(folder_images(images), masks)
    expected = {label: [s.name for s in samples] for label, samples in pairs.items()}
    assert data["pairs"] == expected and expected["50-60%"] == ["small.jpg"]
    assert sum(len(v) for v in expected.values()) == 4
    assert [r["bin"] for r in rows] == [b for b in expected for _ in range(2)]
    for r in data["rows"]:
        assert 0 < r["l1"] < 0.5 and 0 < r["psnr"] < 80 and 0 < r["ssim"] <= 1 and 0 <= r["lpips"] < 1
        assert r["ms"] > 0 and r["images"] == len(expected[r["bin"]]) and r["fid"] is None
    assert any("best LPIPS" in line for line in data["notes"])
    with Image.open(out / "inpainting_grid.png") as grid:  # one row per bin: masked input + 2 methods
        assert grid.size == (3 * 256 + 4 * 2, len(expected) * (256 + 2) + 2)


def test_held_out_faces_by_irregular_bin(capsys, tmp_path, face_data_root):
    out = tmp_path / "cmp"
    rc, stdout, err = run(capsys, "compare", "inpainting", "--held-out", 3, "--res", 64, "--irregular-bins",
                          "10-20,40-50%", "--methods", "ns,biharmonic", "--no-fid", "--out", out)
    assert rc == 0, err
    md, rows, data = read_outputs(out)
    assert "3 held-out faces per bin at 64 px, irregular-12k masks, pairing seed 0" in md
    assert [(r["bin"], r["method"], r["images"]) for r in rows] == [
        ("10-20%", "ns", "3"), ("10-20%", "biharmonic", "3"), ("40-50%", "ns", "3"), ("40-50%", "biharmonic", "3")]
    assert 0.1 < float(rows[0]["hole"]) < 0.2 + 0.05 and 0.4 - 0.05 < float(rows[2]["hole"]) < 0.5 + 0.05
    assert all(r["fid"] is None for r in data["rows"]) and "| - |" in md


def test_fid_on_the_composited_output(capsys, tmp_path, face_data_root):
    out = tmp_path / "cmp"
    rc, _, err = run(capsys, "compare", "inpainting", "--held-out", 4, "--res", 64, "--irregular-bins", "40-50",
                     "--methods", "telea", "--out", out)
    assert rc == 0, err
    _, rows, data = read_outputs(out)
    assert len(rows) == 1 and 0 < data["rows"][0]["fid"] < 1000 and data["fid"] is True


def test_irregular_pairing_is_fixed_by_the_seed(face_data_root):
    images = [(f"img{i}", torch.zeros(1, 3, 32, 48)) for i in range(3)]
    a = irregular_pairs(images, [3], seed=0)["30-40%"]
    b = irregular_pairs(images[:2], [3], seed=0)["30-40%"]
    assert [s.mask.shape for s in a] == [(1, 1, 32, 48)] * 3
    assert all(torch.equal(x.mask, y.mask) for x, y in zip(a, b))  # mask i depends on seed and i only
    # The protocol's pairing: position i of a permutation of the bin drawn with [seed, bin].
    order = np.random.default_rng([0, 3]).permutation(2000)
    want = load_irregular_mask(irregular_mask_indices(3)[int(order[1])], (32, 48))
    assert torch.equal(a[1].mask, want)
    c = irregular_pairs(images, [3], seed=1)["30-40%"]
    assert not all(torch.equal(x.mask, y.mask) for x, y in zip(a, c))
    square = irregular_pairs([(f"img{i}", torch.zeros(1, 3, 40, 40)) for i in range(3)], [3], seed=0)["30-40%"]
    assert torch.equal(paired_masks(3, 3, 40, seed=0), torch.cat([s.mask for s in square]))


def test_glcic_with_and_without_poisson(capsys, tmp_path, monkeypatch, user_folders):
    assert as_variant("glcic-no-poisson") == Variant(Method.GLCIC, poisson=False)
    assert as_variant("telea") == as_variant(Method.TELEA) == Variant(Method.TELEA)
    with pytest.raises(ValueError, match="only the glcic methods"):
        as_variant("ns-no-poisson")
    # A small completion network stands in for the shipped default (same loader, same path).
    monkeypatch.setattr(glcic_checkpoints, "DEFAULT_GLCIC", tmp_path / "glcic64.safetensors")
    glcic_inpaint._default_model.cache_clear()
    torch.manual_seed(0)
    save_glcic(CompletionNetwork(GlcicConfig(channels=4)).eval(), tmp_path / "glcic64.safetensors")
    images, masks = user_folders
    out = tmp_path / "cmp"
    try:
        rc, _, err = run(capsys, "compare", "inpainting", "--images", images, "--masks", masks,
                         "--methods", "glcic,glcic-no-poisson", "--no-fid", "--out", out)
    finally:
        glcic_inpaint._default_model.cache_clear()
    assert rc == 0, err
    _, rows, _ = read_outputs(out)
    assert [r["method"] for r in rows[:2]] == ["glcic", "glcic-no-poisson"]
    assert rows[0]["l1"] != rows[1]["l1"]


def test_bins_and_hole_ratios():
    assert parse_bins("10-20, 50-60%") == [1, 5] and parse_bins(["1-10"]) == [0]
    with pytest.raises(ValueError, match="10-20"):
        parse_bins("15-25")
    assert hole_bin(0.005)[1] == "0-1%" and hole_bin(0.15)[1] == "10-20%" and hole_bin(0.7)[1] == "60-100%"


def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, user_folders):
    images, masks = user_folders
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.new("RGB", (40, 40)).save(lonely / "nobody.png")
    out = tmp_path / "o"
    for args, words in [
        (["--images", images, "--masks", lonely], "celeba_01.png"),  # no mask named like it
        (["--images", lonely, "--masks", masks], "nobody"),
        (["--masks", masks], "--images"),
        (["--irregular-bins", "15-25"], "15-25"),
        (["--methods", "telea,magic"], "magic"),
        (["--methods", "telea-no-poisson"], "only the glcic methods"),
        (["--held-out", 0], "--held-out"),
        (["--images", tmp_path / "none"], "no such folder"),
        (["--methods", "telea", "--weights", "a", "b"], "--weights"),
        (["--held-out", 2, "--weights", tmp_path / "e.pth", tmp_path / "i.pth"], "e.pth"),
    ]:
        rc, _, err = run(capsys, "compare", "inpainting", *args, "--out", out)
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not out.exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inpainting.json").write_text("{}")
    rc, _, err = run(capsys, "compare", "inpainting", "--images", images, "--masks", masks, "--out", tmp_path / "taken")
    assert rc == 2 and "--force" in err
