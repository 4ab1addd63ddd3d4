"""``--device`` on every command that runs a model, and on the app: a GPU that is not there is one
line and exit status 2, before any file is read or written."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ganbrush_cli
from ganbrush_core.devices import DEVICE_ENV

REPO = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
no_gpu = pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")

# Commands that run no model: nothing to place on a device.
NO_MODEL = {"ops info", "ops build", "ops selftest", "convert", "data faces", "train pack"}


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_commands(sub, (*prefix, name))


def test_every_command_that_runs_a_model_takes_device():
    commands = dict(leaf_commands(ganbrush_cli.build_parser()))
    assert {"invert", "edit", "pipeline", "directions", "sample", "inpaint", "train stylegan"} <= set(commands)
    missing = [name for name, p in commands.items() if name not in NO_MODEL
               and not any("--device" in a.option_strings for a in p._actions)]
    assert not missing, f"commands without --device: {missing}"


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, make_generator) -> Path:
    from stylegan_ops import save_generator

    return save_generator(make_generator(8, z_dim=8, w_dim=8, channel_max=8),
                          tmp_path_factory.mktemp("g") / "g.safetensors")


@pytest.mark.parametrize("device", ["cpu"] + ([] if HAS_CUDA else ["auto"]))
def test_sample_runs_on_the_cpu(generator_file, tmp_path, device, capsys):
    out = tmp_path / "grid.png"
    assert ganbrush_cli.main(["sample", "--generator", str(generator_file), "--out", str(out), "--num", "2",
                              "--device", device]) == 0
    assert out.is_file()


@no_gpu
@pytest.mark.parametrize("argv", [
    ["sample", "--out", "{tmp}/grid.png"],
    ["invert", "{tmp}/no-such-photo.jpg", "--out", "{tmp}/inv"],  # refused before the photo is read
    ["pipeline", "{tmp}/no-such-photo.jpg", "--out", "{tmp}/out.png"],
    ["inpaint", "{tmp}/a.png", "{tmp}/m.png", "--out", "{tmp}/out.png"],
])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(argv, tmp_path, capsys):
    code = ganbrush_cli.main([a.format(tmp=tmp_path) for a in argv] + ["--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no CUDA GPU" in err and "use cpu" in err, err
    assert not any(tmp_path.iterdir())


@no_gpu
def test_the_environment_sets_the_default_device(tmp_path):
    env = {**os.environ, DEVICE_ENV: "cuda", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ganbrush_cli", "sample", "--out", str(tmp_path / "g.png")],
                         capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'cuda'" in out.stderr, out.stderr


def test_the_app_takes_device(tmp_path):
    args = ["--device", "cuda"] if not HAS_CUDA else ["--device", "cuda:99"]
    out = subprocess.run([sys.executable, "app.py", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "GRADIO_TEMP_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "cuda" in out.stderr and "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())  # refused before the work folder or any model


def test_loaders_read_device_names(generator_file):
    from stylegan_ops import load_generator

    for name in ("cpu", "auto") if not HAS_CUDA else ("cpu", "cuda"):
        G = load_generator(generator_file, device=name)
        assert next(G.parameters()).device.type == ("cuda" if name == "cuda" else "cpu")
    if not HAS_CUDA:
        from ganbrush_core.devices import DeviceError

        with pytest.raises(DeviceError, match="use cpu"):
            load_generator(generator_file, device="cuda")


def test_invert_and_pipeline_switch_mixed_precision():
    parser = ganbrush_cli.build_parser()
    for command in ("invert", "pipeline"):
        args = [command, "photo.jpg", "--out", "out.png"]
        assert parser.parse_args(args).mixed_precision is None  # ProjectionSettings' default (off)
        assert parser.parse_args([*args, "--mixed-precision"]).mixed_precision is True
        assert parser.parse_args([*args, "--no-mixed-precision"]).mixed_precision is False
