"""``ganbrush edit`` as a user runs it, on a small random generator."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.images import to_uint8
from inversion.result import Inversion
from manipulate import edit
from manipulate.directions import load_directions, save_directions, sefa
from stylegan_ops import save_generator
from stylegan_ops.checkpoints import generator_hash, load_generator
from stylegan_ops.networks import sample_w


def _wired() -> bool:
    import ganbrush_cli

    sub = next(a for a in ganbrush_cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "edit" in sub.choices


pytestmark = pytest.mark.skipif(not _wired(), reason="`ganbrush edit` is not registered in ganbrush_cli.py yet "
                                                     "(add manipulate.edit_cli.register(sub))")


def run(*args):
    return subprocess.run([sys.executable, "-m", "ganbrush_cli", "edit", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_generator):
    root = tmp_path_factory.mktemp("edit-cli")
    g_path = save_generator(make_generator(seed=0), root / "g.safetensors")
    other_path = save_generator(make_generator(seed=1), root / "other.safetensors")
    G = load_generator(g_path)  # as the command will see it (the file's precision)
    dirs = [dataclasses.replace(d, name=n) for d, n in zip(sefa(G, num=2, scale_samples=300), ["smiling", "male"])]
    directions = save_directions(root / "attrs.npz", dirs, G)
    ws = sample_w(G, 1, seed=2)[:, None].repeat(1, G.num_ws, 1)
    with torch.no_grad():
        recon = G.synthesis(ws)
    inv = Inversion(ws=ws, noises=[m.clone() for m in G.noise_maps()], reconstruction=recon, target=recon,
                    method="w+", steps=1, generator_hash=generator_hash(G))
    inversion = inv.save(root / "inv.npz")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 8:40] = 255  # white = may change, drawn at 4x the image size
    Image.fromarray(mask).save(root / "mask.png")
    return {"G": G, "generator": g_path, "other": other_path, "directions": directions, "inversion": inversion,
            "mask": root / "mask.png", "inv": inv}


def test_edit_writes_the_edited_face(files, tmp_path):
    out = tmp_path / "smile.png"
    r = run(files["inversion"], "--direction", "smile", "--strength", "2", "--layers", "0-3", "--condition", "male",
            "--directions", files["directions"], "--generator", files["generator"], "--out", out,
            "--save-latent", tmp_path / "smile.npz")
    assert r.returncode == 0, r.stderr
    G = files["G"]
    expected = edit(files["inv"], G, "smile", strength=2, layers=(0, 4), conditions=["male"],
                    directions=load_directions(files["directions"]))
    written = np.asarray(Image.open(out))
    assert written.shape == (16, 16, 3)
    assert np.abs(written.astype(int) - to_uint8(expected.image)[0].astype(int)).max() <= 1
    assert np.abs(written.astype(int) - to_uint8(files["inv"].reconstruction)[0].astype(int)).max() > 10
    again = Inversion.load(tmp_path / "smile.npz", G)
    assert torch.allclose(again.ws, expected.ws, atol=1e-6)
    assert torch.equal(again.ws[:, 4:], files["inv"].ws[:, 4:])  # layers outside 0-3 untouched
    refused = run(files["inversion"], "--direction", "smile", "--strength", "1", "--directions", files["directions"],
                  "--generator", files["generator"], "--out", out)
    assert refused.returncode == 2 and "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_a_masked_edit_changes_only_the_masked_region_with_composite(files, tmp_path):
    out = tmp_path / "local.png"
    r = run(files["inversion"], "--direction", "smiling", "--strength", "3", "--directions", files["directions"],
            "--generator", files["generator"], "--mask", files["mask"], "--local-steps", "5", "--composite",
            "--out", out)
    assert r.returncode == 0, r.stderr
    written = np.asarray(Image.open(out)).astype(int)
    original = to_uint8(files["inv"].reconstruction)[0].astype(int)
    inside = np.zeros((16, 16), bool)
    inside[4:12, 2:10] = True  # the mask, resized to 16 px
    assert np.abs(written - original)[~inside].max() <= 1
    assert np.abs(written - original)[inside].max() > 10


def test_unknown_direction_lists_the_names(files, tmp_path):
    r = run(files["inversion"], "--direction", "beard", "--strength", "1", "--directions", files["directions"],
            "--generator", files["generator"], "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "available: male, smiling" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_an_inversion_of_another_generator_is_refused(files, tmp_path):
    r = run(files["inversion"], "--direction", "smile", "--strength", "1", "--generator", files["other"],
            "--out", tmp_path / "x.png")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "invert the photo again with this generator" in r.stderr
    assert not (tmp_path / "x.png").exists()


# -- --photo: the edit at the photo's own resolution (issue 16) -------------------------------------
@pytest.fixture(scope="module")
def photo_inversion(tmp_path_factory, photos_dir):
    """A few-step W+ inversion of laos.jpg's largest face with the shipped generator."""
    from ganbrush_core.images import uint8_to_float
    from inversion import align_face, detect_faces, invert, load_photo

    G = load_generator("default")
    photo = load_photo(photos_dir / "laos.jpg")
    aligned = align_face(photo, detect_faces(photo)[0], G.img_resolution)
    inv = invert(G, uint8_to_float(aligned.image), method="w+", steps=3)
    return {"photo": photo, "aligned": aligned, "npz": inv.save(tmp_path_factory.mktemp("photo-edit") / "inv.npz")}


def test_photo_edit_renders_at_the_photos_resolution(photo_inversion, photos_dir, tmp_path):
    from inversion.align import paste_mask

    out = tmp_path / "edited.png"
    r = run(photo_inversion["npz"], "--direction", "smile", "--strength", 3, "--photo", photos_dir / "laos.jpg",
            "--out", out)
    assert r.returncode == 0, r.stderr
    photo, result = photo_inversion["photo"], np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == photo.shape
    assert (out.stat().st_mode & 0o777) == 0o644
    outside = paste_mask(photo.shape, photo_inversion["aligned"]) == 0
    np.testing.assert_array_equal(result[outside], photo[outside])
    assert np.abs(result.astype(int) - photo).max() > 10  # the edit reached the face


def test_photo_edit_of_zero_returns_the_photo_and_another_face_is_refused(photo_inversion, photos_dir, tmp_path):
    out = tmp_path / "same.png"
    r = run(photo_inversion["npz"], "--direction", "smile", "--strength", 0, "--photo", photos_dir / "laos.jpg",
            "--out", out)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), photo_inversion["photo"])
    wrong = tmp_path / "wrong.png"
    r = run(photo_inversion["npz"], "--direction", "smile", "--strength", 3, "--photo",
            photos_dir / "model_face.jpg", "--out", wrong)
    assert r.returncode != 0 and not wrong.exists()
    assert "not the face that was inverted" in r.stderr and len(r.stderr.strip().splitlines()) == 1
