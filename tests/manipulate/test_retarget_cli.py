"""``ganbrush retarget`` on a real photo, as a user runs it (few steps, small working size)."""

import os
import stat

import numpy as np
import pytest
from PIL import Image

import ganbrush_cli

FAST = ["--steps", "3", "--working-size", "32"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def laos(photos_dir):
    return photos_dir / "laos.jpg"  # 960x640


def run(capsys, *args):
    code = ganbrush_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_retarget_writes_the_photo_at_the_size_asked_and_caches_the_model(capsys, laos, tmp_path, home):
    out = tmp_path / "wide.png"
    code, stdout, err = run(capsys, "retarget", laos, "--size", "1440x640", "--out", out, *FAST)
    assert code == 0, err
    assert "trained in" in stdout and "1440x640 from 960x640" in stdout
    with Image.open(out) as im:
        assert im.size == (1440, 640)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    (entry,) = (home / "retarget").iterdir()
    assert (entry / "ingan.safetensors").is_file() and (entry / "info.json").is_file()
    # Further sizes of the same photo reuse the model; several sizes make one strip.
    strip_file = tmp_path / "strip.jpg"
    code, stdout, err = run(capsys, "retarget", laos, "--sizes", "1440x640,672x640,960x832", "--out", strip_file,
                            *FAST)
    assert code == 0, err
    assert "cached model" in stdout
    with Image.open(strip_file) as im:
        assert im.size == (1440 + 8 + 672 + 8 + 960, 832)


def test_gpnn_method_trains_nothing_and_caches_nothing(capsys, laos, tmp_path, home):
    out = tmp_path / "narrow.png"
    code, stdout, err = run(capsys, "retarget", laos, "--size", "700x640", "--method", "gpnn", "--working-size", "32",
                            "--out", out)
    assert code == 0, err
    assert "gpnn" in stdout and "700x640 from 960x640" in stdout
    with Image.open(out) as im:
        assert im.size == (700, 640)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert not (home / "retarget").exists()


def test_existing_output_is_refused_unless_forced(capsys, laos, tmp_path):
    out = tmp_path / "same.png"
    out.write_bytes(b"keep")
    code, _, err = run(capsys, "retarget", laos, "--size", "960x640", "--out", out)
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep"
    code, stdout, err = run(capsys, "retarget", laos, "--size", "960x640", "--out", out, "--force")
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(laos).convert("RGB"))[:, :, :])


@pytest.mark.parametrize("args, message", [
    (["--size", "0x640"], "width 0 is out of range"),
    (["--size", "4000x640"], "at most 4x"),
    (["--size", "wide"], "WIDTHxHEIGHT"),
    (["--sizes", "1440x640,10x10"], "out of range"),
    (["--size", "1440x640", "--steps", "0"], "--steps must be"),
    (["--size", "1440x640", "--working-size", "999"], "--working-size must be"),
])
def test_bad_input_is_one_line_before_any_training(capsys, laos, tmp_path, home, args, message):
    out = tmp_path / "x.png"
    code, _, err = run(capsys, "retarget", laos, *args, "--out", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (home / "retarget").exists()


def test_unreadable_photo_and_bad_suffix_are_one_line(capsys, tmp_path, laos):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    code, _, err = run(capsys, "retarget", bad, "--size", "20x20", "--out", tmp_path / "o.png")
    assert code == 2 and "not a readable image" in err
    code, _, err = run(capsys, "retarget", laos, "--size", "900x640", "--out", tmp_path / "o.txt")
    assert code == 2 and "suffix" in err
