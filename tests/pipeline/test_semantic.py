"""ganbrush_semantic on real photos with the shipped parser and synthesizer: ``ganbrush labels`` and
``ganbrush synthesize`` as a user runs them (``ganbrush_cli.main``), and the API behind them.

Behaviour, not appearance (the same tests hold for untrained and trained weights): files and their
sizes, refusals, one-line errors, and the photo bit-identical outside the redrawn region. Face
detection (dlib) is the slow part: each module fixture runs one command and the tests share it.
"""

import cv2
import numpy as np
import pytest
from PIL import Image

import ganbrush_cli
import ganbrush_semantic as sem
from ganbrush_core.paths import data_root
from inversion import align_face, load_photo
from manipulate import labels as L
from manipulate.synthesis import SynthesisError, changed_region, get_synthesizer
from manipulate.transfer import TransferOptions

PHOTOS = data_root() / "photos"
PHOTO = PHOTOS / "woman_portrait.jpg"
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent


def cli(*args: object) -> int:
    return ganbrush_cli.main([str(a) for a in args])


def one_line_error(capsys: pytest.CaptureFixture, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ganbrush: error:") and err.count("\n") == 1 and expected in err, err
    return err


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_photo(PHOTO)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """``ganbrush labels`` run once: the folder holding map.png, map.index.png and face.png."""
    out = tmp_path_factory.mktemp("labels")
    assert cli("labels", PHOTO, "--out", out / "map.png", "--face-out", out / "face.png") == 0
    return out


@pytest.fixture(scope="module")
def own(photo) -> sem.FaceLabels:
    """The face's own map through the API (faces found once, shared by the API tests)."""
    return sem.photo_labels(photo)


@pytest.fixture(scope="module")
def widened(labelled):
    """The written map with the mouth widened 30 %, saved colour-coded (as a painting program would)."""
    edited = L.scale_parts(L.read_label_map(labelled / "map.png"), L.MOUTH, 1.3)
    path = labelled / "wide_mouth.png"
    L.write_label_map(edited, path)
    return path


@pytest.fixture(scope="module")
def footprint(photo, own, widened) -> np.ndarray:
    """bool ``[H, W]``: the photo pixels the widened mouth may change, warped from the aligned
    frame: the changed labels' region (with its margin), grown by EdgeConnect's band around it and
    by the edit transfer's change mask (dilated and feathered), plus 2 px that optical flow and the
    band-limited residual reach past the pixels that differ (measured: 8 px in all at 64 px)."""
    res = get_synthesizer().cfg.resolution
    aligned = align_face(photo, own.aligned.face, res)
    region = changed_region(own.labels, L.read_label_map(widened), res, sem.MARGIN).astype(np.uint8)
    t = TransferOptions()
    reach = sem.BLEND_BAND + max(1, round(t.dilate * res)) + max(1, round(t.feather * res)) + 2
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
    return cv2.warpAffine(cv2.dilate(region, grow).astype(np.float32), aligned.to_photo[:2], photo.shape[1::-1],
                          flags=cv2.INTER_LINEAR) > 0


@pytest.fixture(scope="module")
def synthesized(labelled, widened):
    """``ganbrush synthesize`` with the widened mouth, in the face's own style, run once."""
    out = labelled / "result.png"
    assert cli("synthesize", PHOTO, "--labels", widened, "--out", out, "--render-out", labelled / "renders.png") == 0
    return out


# -- ganbrush labels ---------------------------------------------------------------------------------
def test_labels_writes_the_colour_map_its_index_and_the_face(labelled, own):
    colour = read_rgb(labelled / "map.png")
    assert colour.shape == (sem.MAP_SIZE, sem.MAP_SIZE, 3)
    # Every pixel is exactly a palette colour, and the index PNG holds the same map.
    labels = L.snap_colors(colour, max_distance=0)
    np.testing.assert_array_equal(L.colorize(labels), colour)
    with Image.open(labelled / "map.index.png") as index:
        assert index.mode == "L"
        np.testing.assert_array_equal(np.asarray(index), labels)
    # The same map the API gives (same detection, alignment, parser and landmarks).
    np.testing.assert_array_equal(labels, own.labels)
    present = {L.CLASSES[i] for i in np.unique(labels)}
    assert {"skin", "nose", "left_eye", "right_eye", "upper_lip", "lower_lip"} <= present
    with Image.open(labelled / "face.png") as face:
        assert face.size == (sem.MAP_SIZE, sem.MAP_SIZE) and face.mode == "RGB"


def test_labels_refuses_to_overwrite_without_force(labelled, tmp_path, capsys):
    before = (labelled / "map.png").read_bytes()
    one_line_error(capsys, cli("labels", PHOTO, "--out", labelled / "map.png"), "--force")
    assert (labelled / "map.png").read_bytes() == before
    # The index file alone existing is refused too, and nothing is written.
    (tmp_path / "new.index.png").write_bytes(b"mine")
    one_line_error(capsys, cli("labels", PHOTO, "--out", tmp_path / "new.png"), "--force")
    assert not (tmp_path / "new.png").exists() and (tmp_path / "new.index.png").read_bytes() == b"mine"


@pytest.mark.parametrize("case, expected", [("noface", "no face"), ("size", "map size"), ("suffix", ".png")])
def test_labels_bad_input_is_one_line(tmp_path, capsys, case, expected):
    photo, extra, out = PHOTO, [], tmp_path / "map.png"
    if case == "noface":
        photo = tmp_path / "flat.png"
        Image.new("RGB", (300, 200), (120, 140, 160)).save(photo)
    elif case == "size":
        extra = ["--size", "8"]
    else:
        out = tmp_path / "map.jpg"  # lossy: painted colours would not survive
    one_line_error(capsys, cli("labels", photo, "--out", out, *extra), expected)
    assert not list(tmp_path.glob("map*"))


# -- ganbrush synthesize ------------------------------------------------------------------------------
def test_synthesize_changes_only_the_region_around_the_mouth(photo, own, footprint, synthesized):
    result = read_rgb(synthesized)
    assert result.shape == photo.shape
    changed = (result != photo).any(-1)
    assert changed.any()
    assert not changed[~footprint].any()  # every pixel outside the redrawn region is bit-identical
    # ...and that region is the mouth's: the changed pixels gather about its centre, within a
    # mouth's width of its box.
    mouth = own.faces[0].landmarks[48:68]
    width = np.ptp(mouth[:, 0])
    ys, xs = np.nonzero(changed)
    assert np.hypot(xs.mean() - mouth[:, 0].mean(), ys.mean() - mouth[:, 1].mean()) < 0.5 * width
    assert xs.min() > mouth[:, 0].min() - width and xs.max() < mouth[:, 0].max() + width
    assert ys.min() > mouth[:, 1].min() - width and ys.max() < mouth[:, 1].max() + width


def test_synthesize_api_gives_the_cli_result(photo, own, widened, synthesized):
    result = sem.synthesize_photo(photo, L.read_label_map(widened), faces=own.faces)
    np.testing.assert_array_equal(result.photo, read_rgb(synthesized))
    res = get_synthesizer().cfg.resolution
    assert result.region.shape == (res, res) and result.region.any() and not result.region.all()
    for image in (result.reconstruction, result.synthesized, result.render):
        assert image.shape == (res, res, 3) and image.dtype == np.uint8
    # Outside the region and its blended border, the render is the reconstruction itself.
    ring = cv2.dilate(result.region.astype(np.uint8), np.ones((2 * sem.BLEND_BAND + 1,) * 2, np.uint8)) > 0
    np.testing.assert_array_equal(result.render[~ring], result.reconstruction[~ring])


def test_synthesize_writes_the_renders_strip(labelled, synthesized):
    res = get_synthesizer().cfg.resolution
    with Image.open(labelled / "renders.png") as strip:
        assert strip.size == (3 * res, res)


def test_synthesize_in_another_style(photo, widened, footprint, synthesized, tmp_path):
    out = tmp_path / "style3.png"
    assert cli("synthesize", PHOTO, "--labels", widened, "--out", out, "--style", "3") == 0
    other = read_rgb(out)
    assert other.shape == photo.shape and not np.array_equal(other, read_rgb(synthesized))
    # Whatever the style, only the changed labels' region is redrawn.
    assert not (other != photo).any(-1)[~footprint].any()


def test_synthesize_refuses_an_unedited_map(labelled, tmp_path, capsys):
    out = tmp_path / "result.png"
    one_line_error(capsys, cli("synthesize", PHOTO, "--labels", labelled / "map.png", "--out", out),
                   "equals the face's own")
    assert not out.exists()


@pytest.mark.parametrize("case, expected", [
    ("not-square", "must be the square map"),
    ("not-a-map", "far from every class colour"),
    ("style", "--style must be"),
    ("exists", "--force"),
])
def test_synthesize_bad_input_is_one_line(labelled, widened, tmp_path, capsys, case, expected):
    labels, extra, out = widened, [], tmp_path / "result.png"
    if case == "not-square":
        labels = tmp_path / "cropped.png"
        L.write_label_map(L.read_label_map(widened)[:200], labels)  # 256 wide, 200 high
    elif case == "not-a-map":
        labels = tmp_path / "grey.png"
        Image.new("RGB", (256, 256), (128, 128, 128)).save(labels)  # far from every palette colour
    elif case == "style":
        extra = ["--style", "blue"]
    else:
        out.write_bytes(b"mine")
    one_line_error(capsys, cli("synthesize", PHOTO, "--labels", labels, "--out", out, *extra), expected)
    assert not out.exists() or out.read_bytes() == b"mine"


def test_synthesize_api_refuses_an_unedited_map(photo, own):
    with pytest.raises(SynthesisError, match="equals the face's own"):
        sem.synthesize_photo(photo, own.labels, faces=own.faces)


def test_synthesize_with_the_edgeconnect_border(photo, own, widened, footprint):
    feather = sem.synthesize_photo(photo, L.read_label_map(widened), faces=own.faces)
    ec = sem.synthesize_photo(photo, L.read_label_map(widened), faces=own.faces, blend="edgeconnect")
    assert not np.array_equal(ec.render, feather.render)
    ring = cv2.dilate(ec.region.astype(np.uint8), np.ones((2 * sem.BLEND_BAND + 1,) * 2, np.uint8)) > 0
    np.testing.assert_array_equal(ec.render[~ring], ec.reconstruction[~ring])
    inside = cv2.erode(ec.region.astype(np.uint8), np.ones((2 * sem.BLEND_BAND + 1,) * 2, np.uint8)) > 0
    np.testing.assert_array_equal(ec.render[inside], ec.synthesized[inside])  # EdgeConnect redraws the band only
    assert not (ec.photo != photo).any(-1)[~footprint].any()
    with pytest.raises(ValueError, match="is not a valid Blend"):
        sem.synthesize_photo(photo, L.read_label_map(widened), faces=own.faces, blend="poisson")
