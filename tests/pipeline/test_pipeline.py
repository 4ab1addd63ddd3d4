"""ganbrush_pipeline: the steps and run_pipeline on a real photo with the shipped generator, and
``ganbrush pipeline`` as a user runs it."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import ganbrush_pipeline as pipe
import inpainting
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
    out, used = pipe.inpaint_face(face, mask, method="edgeconnect")
    np.testing.assert_array_equal(out[~mask], face[~mask])
    assert (out[mask] != face[mask]).any()
    np.testing.assert_allclose(used[mask], predicted[mask], atol=1e-6)
    drawn = np.zeros_like(predicted)
    drawn[44, 10:54] = 1  # a line the user drew across the hole
    steered, used2 = pipe.inpaint_face(face, mask, drawn)  # drawn edges: EdgeConnect without being named
    np.testing.assert_array_equal(used2[mask], drawn[mask])
    assert (steered[mask] != out[mask]).any()
    default, none = pipe.inpaint_face(face, mask)  # the installation's default method, which has no edges
    assert none is None and pipe.inpaint_method_for(None, None) == inpainting.default_method().value
    np.testing.assert_array_equal(default[~mask], face[~mask])


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


# -- native-resolution rendering (issue 16): the photo keeps its own pixels -----------------------------
def _native_crop(photo, aligned):
    from inversion.align import align_native

    return align_native(photo, aligned).image


@pytest.fixture(scope="module")
def inversion(edited):
    """The inversion the module already made (STEPS steps of w+), reused so nothing inverts again."""
    return edited.inversion


@pytest.fixture(scope="module")
def smile(G, photo, inversion):
    """``smile=3`` rendered each way, from the same inversion."""
    return {render: pipe.run_pipeline(photo, pipe.PipelineOptions(edits=("smile=3",), inversion=inversion,
                                                                  render=render), G)
            for render in ("native", "residual", "generator")}


def test_no_edit_no_mask_returns_the_photo_bit_identical(G, photo, inversion):
    result = pipe.run_pipeline(photo, pipe.PipelineOptions(inversion=inversion), G)
    assert result.rendering is pipe.Rendering.NATIVE and result.mask is None
    assert result.photo is not photo
    np.testing.assert_array_equal(result.photo, photo)
    np.testing.assert_array_equal(result.face, result.edited)  # the reconstruction, for display


def test_native_edit_leaves_the_outside_bit_identical_and_keeps_the_photos_detail(photo, smile):
    from ganbrush_core.metrics import sharpness
    from inversion.align import paste_mask

    before = sharpness(_native_crop(photo, smile["native"].aligned))
    for render, result in smile.items():
        assert result.rendering.value == render and result.photo.shape == photo.shape
        outside = paste_mask(photo.shape, result.aligned) == 0
        np.testing.assert_array_equal(result.photo[outside], photo[outside], err_msg=render)
        assert (result.photo[~outside] != photo[~outside]).any(), render
    ratio = {render: sharpness(_native_crop(result.photo, result.aligned)) / before for render, result in smile.items()}
    assert ratio["native"] > 0.8 and ratio["residual"] > 0.8, ratio
    assert ratio["generator"] < 0.5, ratio  # the 64 px render scaled up ~4x


def test_native_edit_carries_the_generators_change(G, photo, smile):
    """Seen at the generator's resolution, the native result changed the face the way the edit did."""
    from inversion.align import align_face

    native = smile["native"]
    recon = pipe.edit_face(native.inversion, G).astype(np.float32)
    wanted = native.edited.astype(np.float32) - recon
    got = align_face(native.photo, native.aligned.face, native.aligned.res).image.astype(np.float32) \
        - native.aligned.image
    assert np.abs(wanted).mean() > 2
    corr = float((wanted * got).sum() / np.sqrt((wanted**2).sum() * (got**2).sum()))
    assert corr > 0.5, corr


@pytest.mark.parametrize("size", ["aligned", "photo"])
def test_mask_regenerates_only_its_region(G, photo, inversion, size):
    if size == "aligned":
        mask = np.zeros((64, 64), bool)
        mask[36:52, 16:48] = True
    else:
        face = pipe.find_faces(photo)[0]
        left, top, right, bottom = (int(v) for v in face.box)
        mask = np.zeros(photo.shape[:2], bool)
        mask[(top + bottom) // 2:bottom, left:(left + right) // 2] = True
        mask[:20, :20] = True  # outside the face's square: never regenerated
    result = pipe.run_pipeline(photo, pipe.PipelineOptions(mask=mask, inversion=inversion,
                                                           inpaint_method="biharmonic"), G)
    region = pipe.photo_mask(mask, photo.shape, result.aligned)
    assert region.shape == photo.shape[:2] and region.any() and not region[:20, :20].any()
    np.testing.assert_array_equal(result.photo[~region], photo[~region])
    assert (result.photo[region] != photo[region]).any(-1).mean() > 0.5
    assert result.mask is not None and result.mask.shape == (64, 64) and result.face.shape == (64, 64, 3)
    # Photo pixels under the mask are filled at the photo's scale (the photo's own fine detail
    # aggregated in), not with a 64 px fill scaled up as the generator rendering does.
    from ganbrush_core.metrics import sharpness

    scaled_up = pipe.run_pipeline(photo, pipe.PipelineOptions(mask=mask, inversion=inversion, render="generator",
                                                              inpaint_method="biharmonic"), G)
    native, generator = sharpness(result.photo, region), sharpness(scaled_up.photo, region)
    assert native > 0.08 * sharpness(photo, region) and native > 3 * generator, (native, generator)


def test_cli_render_generator_matches_the_python_call(G, photo, inversion, smile, tmp_path):
    src = next(PHOTOS.glob("laos*"))
    path = inversion.save(tmp_path / "inv.npz")
    out = run_cli(src, "--render", "generator", "--edit", "smile=3", "--inversion", path, "--out", tmp_path / "g.png")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "g.png").convert("RGB")), smile["generator"].photo)
    bad = run_cli(src, "--render", "pixels", "--inversion", path, "--out", tmp_path / "x.png")
    assert bad.returncode != 0 and "--render" in bad.stderr and not (tmp_path / "x.png").exists()
