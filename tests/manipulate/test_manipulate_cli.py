"""``ganbrush directions`` as a user runs it."""

import subprocess
import sys

import pytest

from manipulate.directions import load_directions
from stylegan_ops import save_generator


def run(*args):
    return subprocess.run([sys.executable, "-m", "ganbrush_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, make_generator):
    return save_generator(make_generator(16, channel_base=128), tmp_path_factory.mktemp("g") / "g.safetensors")


@pytest.mark.parametrize("source", ["sefa", "ganspace"])
def test_directions_are_written_for_the_given_generator(generator_file, tmp_path, source):
    out = run("directions", source, "--generator", generator_file, "--out", tmp_path, "--num", "3",
              "--layers", "0-2", "--samples", "500")
    assert out.returncode == 0, out.stderr
    dirs = load_directions(tmp_path / f"{source}.npz")
    assert len(dirs) == 3 and all(d.layers == (0, 3) for d in dirs.values())
    again = run("directions", source, "--generator", generator_file, "--out", tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_bad_layer_range_is_one_line(generator_file, tmp_path):
    out = run("directions", "sefa", "--generator", generator_file, "--out", tmp_path, "--layers", "0-99")
    assert out.returncode == 2 and "outside" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "sefa.npz").exists()
