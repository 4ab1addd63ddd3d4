"""``ganbrush invert`` as a user runs it: a real photo, a small generator, real subprocesses."""

import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganbrush_core.paths import data_root
from inversion.result import Inversion
from stylegan_ops import load_generator, save_generator

PHOTOS = data_root() / "photos"
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent


def run(*args):
    return subprocess.run([sys.executable, "-m", "ganbrush_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, make_generator) -> Path:
    return save_generator(make_generator(32, channel_base=256), tmp_path_factory.mktemp("g") / "g.safetensors")


def photo(name: str) -> Path:
    return next(PHOTOS.glob(f"{name}*"))


def test_invert_writes_aligned_reconstruction_inversion_and_pasted_photo(generator_file, tmp_path):
    src = photo("laos")
    out = run("invert", src, "--out", tmp_path, "--generator", generator_file, "--steps", "3", "--face", "1")
    assert out.returncode == 0, out.stderr
    assert "face 0" in out.stdout and "face 1" in out.stdout
    aligned = np.asarray(Image.open(tmp_path / "aligned.png"))
    recon = np.asarray(Image.open(tmp_path / "reconstruction.png"))
    assert aligned.shape == recon.shape == (32, 32, 3)
    original = np.asarray(Image.open(src).convert("RGB"))
    pasted = np.asarray(Image.open(tmp_path / "pasted.png"))
    assert pasted.shape == original.shape
    changed = (pasted != original).any(axis=2)
    assert 0 < changed.mean() < 0.2  # only the face region changed
    result = Inversion.load(tmp_path / "inversion.npz", load_generator(generator_file))
    assert result.method == "w+" and result.steps == 3
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["aligned.png", "inversion.npz", "pasted.png", "reconstruction.png"]  # no temporary files
    assert all(stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o644 for n in written)  # readable by everyone

    again = run("invert", src, "--out", tmp_path, "--generator", generator_file, "--steps", "3")
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_invert_bad_input_is_one_line(generator_file, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    out = run("invert", blank, "--out", tmp_path / "o", "--generator", generator_file, "--steps", "2")
    assert out.returncode == 2 and "no face" in out.stderr and "blank.png" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "o").exists()
    out = run("invert", photo("laos"), "--out", tmp_path / "o", "--generator", generator_file, "--face", "5")
    assert out.returncode == 2 and "out of range" in out.stderr and not (tmp_path / "o").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    out = run("invert", notes, "--out", tmp_path / "o", "--generator", generator_file)
    assert out.returncode == 2 and "notes.txt" in out.stderr and len(out.stderr.strip().splitlines()) == 1
