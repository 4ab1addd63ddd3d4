"""ganbrush_pipeline: the steps and run_pipeline on a real photo with the shipped generator, and
``ganbrush pipeline`` as a user runs it."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import ganbrush_pipeline as pipe
from ganbrush_core.paths import data_root
from inversion import NoFaceError, load_photo
from stylegan_ops import load_generator

PHOTOS = data_root() / "photos"
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent
STEPS = 5


@pytest.fixture(scope="module")
def G():
    return load_generator("default")


@pytest.fixture(scope="module")
def photo():
    return load_photo(next(PHOTOS.glob("laos*")))


@pytest.fixture(scope="module")
def direction(G) -> str:
    return next(iter(pipe.directions_for(G)))


@pytest.fixture(scope="module")
def edited(G, photo, direction):
    return pipe.run_pipeline(photo, pipe.PipelineOptions(edits=(f"{direction}=3",), steps=STEPS), G)


def test_run_pipeline_changes_only_the_face(photo, edited):
    assert edited.photo.shape == photo.shape and edited.photo.dtype == np.uint8
    assert len(edited.faces) == 2 and edited.inversion.steps == STEPS
    changed = np.abs(edited.photo.astype(int) - photo).sum(-1) > 0
    left, top, right, bottom = (int(v) for v in edited.aligned.face.box)
    assert changed[top:bottom, left:right].mean() > 0.5
    square = pipe.paste(np.zeros_like(photo), edited.aligned, np.full_like(edited.face, 255)).sum(-1) > 0
    assert not changed[~square].any()  # outside the pasted square: bit-identical


def test_edit_moves_away_from_the_reconstruction(G, edited, direction):
    recon = pipe.edit_face(edited.inversion, G)
    assert np.abs(edited.edited.astype(int) - recon).mean() > 2
    np.testing.assert_array_equal(pipe.edit_face(edited.inversion, G, [f"{direction}=3"]), edited.edited)


def test_saved_inversion_reproduces_the_result(G, photo, edited, direction, tmp_path):
    path = edited.inversion.save(tmp_path / "inv.npz")
    again = pipe.run_pipeline(photo, pipe.PipelineOptions(edits=(f"{direction}=3",), inversion=path), G)
    np.testing.assert_array_equal(again.photo, edited.photo)


def test_photo_sized_mask_is_warped_into_the_face_frame(photo, edited):
    mask = np.zeros(photo.shape[:2], bool)
    mask[:, : photo.shape[1] // 8] = True  # a band on the left of the photo
    face_mask = pipe.mask_for_face(mask, photo.shape, edited.aligned)
    r = edited.aligned.res
    assert face_mask.shape == (r, r) and face_mask.any() and not face_mask.all()
    # Each aligned pixel's centre lands, in photo px, inside the band exactly when it is masked
    # (pixels within a pixel of the band's edge are left out).
    ys, xs = np.mgrid[0:r, 0:r]
    x_photo = (edited.aligned.to_photo @ np.stack([xs.ravel(), ys.ravel(), np.ones(r * r)]))[0].reshape(r, r)
    edge = photo.shape[1] // 8 - 0.5
    clear = np.abs(x_photo - edge) > edited.aligned.scale
    np.testing.assert_array_equal(face_mask[clear], (x_photo < edge)[clear])


def test_mask_of_another_size_names_both_accepted_sizes(photo, edited):
    with pytest.raises(pipe.PipelineError, match=r"960x640.*64x64"):
        pipe.mask_for_face(np.ones((10, 20), bool), photo.shape, edited.aligned)


def test_inpaint_keeps_the_outside_and_follows_user_edges(edited):
    face = edited.edited
    mask = np.zeros(face.shape[:2], bool)
    mask[36:52, 16:48] = True
    predicted = pipe.face_edges(face, mask)
    assert predicted.shape == mask.shape and 0 <= predicted.min() and predicted.max() <= 1
    out, used = pipe.inpaint_face(face, mask)
    np.testing.assert_array_equal(out[~mask], face[~mask])
    assert (out[mask] != face[mask]).any()
    np.testing.assert_allclose(used[mask], predicted[mask], atol=1e-6)
    drawn = np.zeros_like(predicted)
    drawn[44, 10:54] = 1  # a line the user drew across the hole
    steered, used2 = pipe.inpaint_face(face, mask, drawn)
    np.testing.assert_array_equal(used2[mask], drawn[mask])
    assert (steered[mask] != out[mask]).any()


def test_user_errors(G, photo, edited):
    with pytest.raises(pipe.PipelineError, match="face 5 is out of range: 2 face"):
        pipe.align(photo, edited.faces, 5, G)
    with pytest.raises(NoFaceError):
        pipe.find_faces(np.full((200, 300, 3), 128, np.uint8))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ganbrush_cli", "pipeline", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_cli_writes_the_photo_and_reuses_its_inversion(direction, tmp_path):
    src = next(PHOTOS.glob("laos*"))
    mask = np.zeros((64, 64), np.uint8)
    mask[36:52, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = run_cli(src, "--edit", f"{direction}=2", "--edit", f"{direction}=1@0-3", "--mask", tmp_path / "mask.png",
                  "--steps", STEPS, "--save-inversion", tmp_path / "inv.npz", "--out", tmp_path / "out.png")
    assert out.returncode == 0, out.stderr
    result = np.asarray(Image.open(tmp_path / "out.png"))
    assert result.shape == load_photo(src).shape and (tmp_path / "inv.npz").is_file()
    refused = run_cli(src, "--out", tmp_path / "out.png", "--inversion", tmp_path / "inv.npz")
    assert refused.returncode != 0 and "--force" in refused.stderr
    bad = run_cli(src, "--edit", "smile", "--out", tmp_path / "other.png")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "NAME=STRENGTH" in bad.stderr
    assert not (tmp_path / "other.png").exists()
