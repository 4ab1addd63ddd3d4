"""The ``ganbrush`` command as a user runs it: real subprocesses, exit codes, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from stylegan_ops import load_generator, save_generator

GANBRUSH = [sys.executable, "-m", "ganbrush_cli"]


def run(*args, cwd=None):
    return subprocess.run([*GANBRUSH, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, make_generator) -> Path:
    G = make_generator(8, z_dim=8, w_dim=8, channel_max=8)
    return save_generator(G, tmp_path_factory.mktemp("g") / "g.safetensors")


def test_every_command_has_help():
    for cmd in (["--help"], ["ops", "--help"], ["ops", "info", "--help"], ["convert", "--help"], ["sample", "--help"],
                ["directions", "--help"], ["inpaint", "--help"]):
        out = run(*cmd)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_convert_writes_and_refuses_to_overwrite(generator_file, tmp_path):
    dst = tmp_path / "out.safetensors"
    first = run("convert", generator_file, dst, "--fp16")
    assert first.returncode == 0, first.stderr
    assert load_generator(dst).cfg == load_generator(generator_file).cfg
    before = dst.read_bytes()
    again = run("convert", generator_file, dst)
    assert again.returncode != 0 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert dst.read_bytes() == before
    assert run("convert", generator_file, dst, "--force").returncode == 0


def test_convert_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "notes.pkl"
    bad.write_text("hello")
    out = run("convert", bad, tmp_path / "x.safetensors")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "notes.pkl" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.safetensors").exists()
    wrong_suffix = run("convert", bad, tmp_path / "x.pt")
    assert wrong_suffix.returncode == 2 and ".safetensors" in wrong_suffix.stderr


def test_sample_writes_a_grid(generator_file, tmp_path):
    out = tmp_path / "grid.png"
    res = run("sample", "--generator", generator_file, "--out", out, "--num", "4")
    assert res.returncode == 0, res.stderr
    from PIL import Image

    assert Image.open(out).size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)


def test_ops_info_lists_every_implementation():
    out = run("ops", "info")
    assert out.returncode == 0
    for impl in ("ref", "cpp", "cuda"):
        assert any(line.startswith(impl) for line in out.stdout.splitlines())
