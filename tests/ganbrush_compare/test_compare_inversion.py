"""``ganbrush compare inversion`` on random generators in the official layouts (NVIDIA .pkl and
rosinality .pt, 256 px), on held-out faces and on a folder of a user's photos; the budget logic."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import ganbrush_cli
from ganbrush_compare.inversion import PTI_PIVOT_SHARE, Speed, faces_from_folder, phases_of, plan_steps, probe
from ganbrush_core.metrics import lpips_model
from inversion.project import MAX_STEPS

_spec = importlib.util.spec_from_file_location(
    "official_layouts", Path(__file__).resolve().parents[1] / "stylegan_ops" / "official_layouts.py")
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)

RES = 256


@pytest.fixture(scope="module")
def nvidia_pkl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nv") / "network-snapshot-000000.pkl"
    official.make_nvidia_pickle(path, img_resolution=RES, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024,
                                channel_max=16, seed=3)
    return path


@pytest.fixture(scope="module")
def rosinality_pt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ros") / "stylegan2-256.pt"
    official.make_rosinality_checkpoint(path, size=RES, style_dim=32, n_mlp=2, channels=8, kind="convert", seed=4)
    return path


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, photos_dir) -> Path:
    """What a user brings: two photos to align, one face already cropped at 256 px, a picture
    without a face, and a file that is not a picture."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("laos.jpg", "woman_portrait.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    with Image.open(photos_dir / "woman_portrait.jpg") as im:
        im.crop((300, 300, 900, 900)).resize((RES, RES)).save(folder / "crop.png")
    Image.new("RGB", (300, 200), (120, 130, 140)).save(folder / "wall.png")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def run(capsys, *args) -> tuple[int, str, str]:
    rc = ganbrush_cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_outputs(out: Path) -> tuple[str, list[dict], dict]:
    with open(out / "inversion.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return (out / "inversion.md").read_text(), rows, json.loads((out / "inversion.json").read_text())


def test_held_out_faces_on_an_nvidia_pickle(capsys, tmp_path, nvidia_pkl, face_data_root):
    out = tmp_path / "cmp"
    rc, stdout, err = run(capsys, "compare", "inversion", "--held-out", 2, "--generator", nvidia_pkl,
                          "--methods", "w+", "--steps", 1, "--budgets", "steps", "--out", out, "--device", "cpu")
    assert rc == 0, err
    md, rows, data = read_outputs(out)
    assert md in stdout and "| budget | method | steps | LPIPS (VGG) |" in md and "(256 px)" in md
    assert [(r["budget_label"], r["method"], r["steps"]) for r in rows] == [("1 steps", "w+", "1")]
    r = data["rows"][0]
    assert r["plan"] == {"steps": 1} and 0 < r["lpips"] < 2 and 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1
    assert r["identity"] >= 0 and r["seconds"] > 0
    assert data["resolution"] == RES and data["how"] == ["held-out", "held-out"] and data["speed"] is None
    with Image.open(out / "inversion_grid.png") as grid:  # targets, then w+; 2 faces a row; 256 px tiles
        assert grid.size == (2 * RES + 3 * 2, 2 * RES + 3 * 2)
    assert data["grid"]["rows"] == ["targets", "w+ (1 steps)"]

    rc, _, err = run(capsys, "compare", "inversion", "--held-out", 2, "--generator", nvidia_pkl, "--out", out)
    assert rc == 2 and "--force" in err and len(err.strip().splitlines()) == 1


def test_user_photos_on_a_rosinality_checkpoint(capsys, tmp_path, rosinality_pt, photo_folder):
    out = tmp_path / "cmp"
    rc, _, err = run(capsys, "compare", "inversion", "--images", photo_folder, "--generator", rosinality_pt,
                     "--methods", "w", "--steps", 1, "--budgets", "steps", "--out", out)
    assert rc == 0, err
    md, rows, data = read_outputs(out)
    # Sorted by name; the wall has no face and is skipped (and said so), the text file is not an image.
    assert data["faces"] == ["crop.png", "laos.jpg", "woman_portrait.jpg"]
    assert data["how"] == ["as given", "aligned", "aligned"]
    assert data["skipped"] == ["wall.png: no face found"] and "wall.png" in err
    assert "3 faces (1 as given, 2 aligned; 1 skipped)" in md and "skipped: wall.png" in md
    assert [(r["method"], r["steps"]) for r in rows] == [("w", "1")]
    with Image.open(out / "inversion_grid.png") as grid:
        assert grid.size == (3 * RES + 4 * 2, 2 * RES + 3 * 2)


def test_equal_steps_and_equal_time_budgets(capsys, tmp_path, make_generator, face_data_root):
    from stylegan_ops import save_generator

    ckpt = save_generator(make_generator(16), tmp_path / "g16.safetensors")
    out = tmp_path / "cmp"
    rc, _, err = run(capsys, "compare", "inversion", "--held-out", 2, "--generator", ckpt, "--methods", "w,pti",
                     "--steps", 4, "--seconds", 1.5, "--probe-steps", 2, "--out", out)
    assert rc == 0, err
    _, rows, data = read_outputs(out)
    assert [(r["budget"], r["method"]) for r in data["rows"]] == [
        ("steps", "w"), ("steps", "pti"), ("seconds", "w"), ("seconds", "pti")]
    assert [r["plan"] for r in data["rows"][:2]] == [{"steps": 4}, {"steps": 1, "pti_steps": 3}]
    assert [r["steps"] for r in rows[:2]] == ["4", "4"]
    for row in data["rows"][2:]:
        speed = Speed(**data["speed"][row["method"]])
        assert row["plan"] == plan_steps("seconds", 4, 1.5, speed)
    assert set(data["speed"]["w"]["per_step"]) == {"steps"}
    assert set(data["speed"]["pti"]["per_step"]) == {"steps", "pti_steps"}
    assert "speed on one face: w " in err and "| 1.5 s | pti |" in (out / "inversion.md").read_text()


def test_folder_faces_align_modes(tmp_path, photo_folder):
    never = faces_from_folder(photo_folder, 64, align="never")
    assert never.how == ["as given"] * 4 and never.images.shape == (4, 3, 64, 64)
    crop = np.asarray(Image.open(photo_folder / "crop.png").convert("RGB"))
    auto = faces_from_folder(photo_folder, RES, align="auto", log=lambda line: None)
    assert np.array_equal(((auto.images[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), crop)
    empty = tmp_path / "empty"
    empty.mkdir()
    Image.new("RGB", (100, 100)).save(empty / "black.png")
    with pytest.raises(ValueError, match="no face found in any"):
        faces_from_folder(empty, 64, log=lambda line: None)
    with pytest.raises(FileNotFoundError, match="no image files"):
        faces_from_folder(_only_text(tmp_path), 64)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        faces_from_folder(photo_folder / "missing", 64)


def _only_text(tmp_path: Path) -> Path:
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "a.txt").write_text("no pictures here")
    return folder


def test_plan_steps_budgets():
    w = Speed({"steps": 0.5}, fixed=1.0)
    pti = Speed({"steps": 0.5, "pti_steps": 1.0}, fixed=2.0)
    one_pass = Speed({}, fixed=0.2)
    tune_only = Speed({"pti_steps": 0.25}, fixed=0.0)
    assert plan_steps("steps", 300, 60, w) == {"steps": 300}
    assert plan_steps("steps", 300, 60, pti) == {"steps": round(300 * PTI_PIVOT_SHARE), "pti_steps": 225}
    assert plan_steps("steps", 300, 60, tune_only) == {"pti_steps": 300}
    assert plan_steps("seconds", 300, 11, w) == {"steps": 20}  # 10 s left after the fixed second
    assert plan_steps("seconds", 300, 42, pti) == {"steps": 20, "pti_steps": 30}
    assert plan_steps("seconds", 300, 0.5, w) == {"steps": 1}  # at least one step
    # A step timed as nearly free (a tiny generator) does not plan more than invert() accepts.
    assert plan_steps("seconds", 300, 60, Speed({"steps": 1e-6}, fixed=0.0)) == {"steps": MAX_STEPS}
    # A method without steps (an encoder) is run once as it is, under either budget.
    assert plan_steps("steps", 300, 60, one_pass) == plan_steps("seconds", 300, 60, one_pass) == {}
    with pytest.raises(ValueError, match="budget"):
        plan_steps("minutes", 1, 1, w)


def test_probe_survives_timer_noise(monkeypatch):
    """Steps faster than the timer's noise: a longer run timed as no slower than a shorter one
    gives an upper-bound s/step (seconds over steps), never zero or a negative."""
    import ganbrush_compare.inversion as cmp

    # warm-up, least twice, +k, +2k twice (steps); +k, +2k twice (pti_steps: not a phase of w)
    seconds = iter([0.5, 0.7, 0.5, 0.6, 0.45, 0.9])
    monkeypatch.setattr(cmp, "_invert", lambda G, image, method, perceptual, steps, pti_steps: SimpleNamespace(
        steps=steps, seconds=next(seconds, 0.5)))
    speed = cmp.probe(None, None, "w", None, k=2)
    assert speed.per_step == {"steps": pytest.approx(0.45 / 5)}


def test_probe_finds_each_methods_phases(small_generator):
    perceptual = lpips_model("vgg")
    face = small_generator(torch.randn(1, 16, generator=torch.Generator().manual_seed(0))).clamp(-1, 1).detach()
    assert phases_of(small_generator, face, "w+", perceptual) == ["steps"]
    assert phases_of(small_generator, face, "pti", perceptual) == ["steps", "pti_steps"]
    speed = probe(small_generator, face, "pti", perceptual, k=1)
    assert set(speed.per_step) == {"steps", "pti_steps"} and all(s > 0 for s in speed.per_step.values())
    assert math.isfinite(speed.fixed) and speed.fixed >= 0


def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, nvidia_pkl):
    out = tmp_path / "o"
    for args, words in [
        (["--held-out", 2, "--methods", "w+,magic"], "magic"),
        (["--held-out", 2, "--budgets", "minutes"], "--budgets"),
        (["--held-out", 2, "--steps", 0], "steps"),
        (["--held-out", 2, "--seconds", "nan"], "--seconds"),
        (["--held-out", 0], "--held-out"),
        (["--images", tmp_path / "nowhere"], "no such folder"),
        (["--held-out", 2, "--generator", tmp_path / "none.pkl"], "no such file"),
        (["--held-out", 2, "--device", "cuda:7"], "cuda:7"),
    ]:
        rc, _, err = run(capsys, "compare", "inversion", "--generator", nvidia_pkl, *args, "--out", out)
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not out.exists()
