"""``ganbrush inpaint`` through ``inpainting.cli.register`` on a fresh argparse parser (the command
is wired into ganbrush_cli separately): outputs, overwrite protection and one-line errors."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.masks import MaskError
from inpainting import (
    CheckpointError,
    EdgeConnect,
    EdgeGenerator,
    InpaintGenerator,
    checkpoints,
    save_edgeconnect,
)
from inpainting import cli as inpaint_cli


def run(*argv) -> int:
    parser = argparse.ArgumentParser(prog="ganbrush")
    inpaint_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["inpaint", *map(str, argv)])
    return args.func(args)


@pytest.fixture()
def files(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    rgb = np.dstack([xx * 5, yy * 6, 128 + rng.integers(-5, 5, (40, 48))]).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[10:22, 14:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(255 - mask).save(tmp_path / "inverted.png")
    Image.fromarray(mask[:32]).save(tmp_path / "small.png")
    Image.fromarray(np.zeros_like(mask)).save(tmp_path / "empty.png")
    Image.fromarray(np.full_like(mask, 255)).save(tmp_path / "full.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return {p.stem: p for p in tmp_path.iterdir()}


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text
    return text


def test_classical_method_writes_and_refuses_to_overwrite(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert run(files["photo"], files["mask"], "--out", out, "--method", "telea") == 0
    result, photo = np.asarray(Image.open(out)), np.asarray(Image.open(files["photo"]))
    known = np.asarray(Image.open(files["mask"])) == 0
    assert result.shape == photo.shape and np.array_equal(result[known], photo[known])
    assert "wrote" in capsys.readouterr().out
    before = out.read_bytes()
    with pytest.raises(FileExistsError) as e:
        run(files["photo"], files["mask"], "--out", out, "--method", "ns")
    assert "--force" in _one_line(e) and out.read_bytes() == before
    assert run(files["photo"], files["mask"], "--out", out, "--method", "ns", "--force") == 0


def test_bad_masks_and_files_are_one_line_errors(files, tmp_path):
    out = tmp_path / "never.png"
    cases = [
        (files["small"], MaskError, "resize the mask"),
        (files["empty"], MaskError, "no hole"),
        (files["full"], MaskError, "whole image"),
        (files["broken"], MaskError, "broken.png"),
        (tmp_path / "missing.png", FileNotFoundError, "missing.png"),
    ]
    for mask, error, text in cases:
        with pytest.raises(error) as e:
            run(files["photo"], mask, "--out", out, "--method", "telea")
        assert text in _one_line(e)
    with pytest.raises(ValueError) as e:
        run(files["broken"], files["mask"], "--out", out, "--method", "telea")
    assert "broken.png" in _one_line(e)
    with pytest.raises(ValueError) as e:
        run(files["photo"], files["mask"], "--out", out, "--method", "telea", "--edges", files["mask"])
    assert "edgeconnect" in _one_line(e)
    assert not out.exists()


def test_inverted_looking_mask_warns_with_the_hint(files, tmp_path, capsys):
    assert run(files["photo"], files["inverted"], "--out", tmp_path / "o.png", "--method", "telea") == 0
    err = capsys.readouterr().err
    assert "warning" in err and "--invert-mask" in err and err.count("\n") == 1
    # Read the other way round it is the ordinary mask, and no warning is given.
    assert run(files["photo"], files["inverted"], "--out", tmp_path / "p.png", "--method", "telea",
               "--invert-mask") == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "p.png").read_bytes() != (tmp_path / "o.png").read_bytes()


def test_edgeconnect_without_default_weights_says_which_flag_to_use(files, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_EDGE", tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError) as e:
        run(files["photo"], files["mask"], "--out", tmp_path / "o.png")
    assert "--weights" in _one_line(e)


def test_edgeconnect_with_weights_and_edges(files, tmp_path):
    torch.manual_seed(0)
    e_path, i_path = save_edgeconnect(EdgeConnect(EdgeGenerator(8, 1), InpaintGenerator(8, 1)),
                                      tmp_path / "e.safetensors", tmp_path / "i.safetensors")
    out, edges = tmp_path / "o.png", tmp_path / "edges.png"
    assert run(files["photo"], files["mask"], "--out", out, "--weights", e_path, i_path, "--save-edges", edges) == 0
    assert Image.open(edges).size == (48, 40) and Image.open(edges).mode == "L"
    drawn = np.asarray(Image.open(edges)).copy()
    drawn[16, :] = 255  # a user line across the hole
    Image.fromarray(drawn).save(tmp_path / "drawn.png")
    out2 = tmp_path / "o2.png"
    assert run(files["photo"], files["mask"], "--out", out2, "--weights", e_path, i_path,
               "--edges", tmp_path / "drawn.png") == 0
    a, b = np.asarray(Image.open(out)), np.asarray(Image.open(out2))
    known = np.asarray(Image.open(files["mask"])) == 0
    assert np.array_equal(a[known], b[known]) and not np.array_equal(a, b)
    with pytest.raises(CheckpointError) as e:
        run(files["photo"], files["mask"], "--out", tmp_path / "o3.png", "--weights", i_path, e_path)
    assert "edge model first" in _one_line(e)
