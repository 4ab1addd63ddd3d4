"""Face detection, alignment and paste-back on the real photos in ../shared/data/photos.

Detections are cached in module-scope fixtures: dlib is the slow part."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ganbrush_core.paths import data_root
from inversion import dlib_models
from inversion.align import AlignedFace, Face, NoFaceError, align_face, detect_faces, paste_back, paste_mask
from inversion.photos import load_photo

PHOTOS = data_root() / "photos"
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent

# The seven front-row faces of classroom_in_tanzania.jpg (725x544), face centres (x, y) read off
# the picture by eye. The back rows hold more, smaller faces that a detector may or may not find.
CLASSROOM_FACES = [(478, 326), (548, 236), (305, 384), (197, 251), (100, 212), (667, 281), (292, 172)]
# The generator's framing (ganbrush_core.faces): eye centre and eye distance as fractions of the side.
GANBRUSH_EYES, GANBRUSH_EYE_DISTANCE = (0.50, 0.275), 0.40


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: load_photo(PHOTOS / f"{name}.jpg")
            for name in ("classroom_in_tanzania", "laos", "model_face", "woman_portrait")}


@pytest.fixture(scope="module")
def hog_faces(photos) -> dict[str, list[Face]]:
    return {name: detect_faces(photo) for name, photo in photos.items()}


@pytest.fixture(scope="module")
def classroom_cnn(photos) -> list[Face]:
    return detect_faces(photos["classroom_in_tanzania"], detector="cnn")


def _contains(box: tuple[float, float, float, float], point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _eyes(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Eye centre (x, y) and eye distance from 68 landmarks."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    return (left + right) / 2, float(np.linalg.norm(right - left))


def _measure_eyes(image: np.ndarray, work: int = 256) -> tuple[np.ndarray, float] | None:
    """Eyes on an aligned face, upsampled to ``work`` px, as fractions of its side (None if dlib
    finds no face in it)."""
    big = cv2.resize(image, (work, work), interpolation=cv2.INTER_LANCZOS4)
    rects, _, _ = dlib_models.hog_detector().run(big, 0, -0.5)
    if not rects:
        return None
    shape = dlib_models.shape_predictor68()(big, rects[0])
    centre, distance = _eyes(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
    return centre / work, distance / work


def _is_largest_first(faces: list[Face]) -> bool:
    return all(a.area >= b.area for a, b in zip(faces, faces[1:]))


def test_cnn_finds_all_seven_classroom_faces_largest_first(classroom_cnn):
    assert _is_largest_first(classroom_cnn)
    for centre in CLASSROOM_FACES:
        hits = [f for f in classroom_cnn if _contains(f.box, centre)]
        assert len(hits) == 1, f"face at {centre}: {len(hits)} boxes"
    # The seven front faces are the seven largest boxes.
    for face in classroom_cnn[:7]:
        assert any(_contains(face.box, c) for c in CLASSROOM_FACES)


def test_hog_faces_have_landmarks_inside_their_boxes(hog_faces):
    assert len(hog_faces["laos"]) == 2
    assert len(hog_faces["model_face"]) == 1 and len(hog_faces["woman_portrait"]) == 1
    classroom = hog_faces["classroom_in_tanzania"]
    assert len(classroom) >= 3 and all(any(_contains(f.box, c) for c in CLASSROOM_FACES) for f in classroom[:3])
    for faces in hog_faces.values():
        assert _is_largest_first(faces)
        for f in faces:
            assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float64
            centre, distance = _eyes(f.landmarks)
            left, top, right, bottom = f.box
            assert _contains(f.box, centre) and 0.2 < distance / (right - left) < 0.6
            assert isinstance(f.score, float)


def test_large_photo_is_detected_on_a_smaller_copy_and_mapped_back(photos, hog_faces):
    photo = photos["model_face"]  # 1280x1920
    big = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    (face,) = detect_faces(big)
    (small,) = hog_faces["model_face"]
    width = small.box[2] - small.box[0]
    np.testing.assert_allclose(np.array(face.box), 2 * np.array(small.box) + 0.5, atol=0.03 * width)
    # Landmarks are found at full resolution: they agree with the 1x ones within a few pixels.
    eyes_big, dist_big = _eyes(face.landmarks)
    eyes_small, dist_small = _eyes(small.landmarks)
    assert np.abs(eyes_big - (2 * eyes_small + 0.5)).max() < 0.03 * dist_big
    assert dist_big == pytest.approx(2 * dist_small, rel=0.03)


def test_small_photo_is_upsampled_so_small_faces_are_found(photos, hog_faces):
    small = cv2.resize(photos["laos"], (160, 107), interpolation=cv2.INTER_AREA)  # faces ~45 px wide
    faces = detect_faces(small)
    assert len(faces) == 2
    scale = photos["laos"].shape[1] / 160
    matched = set()
    for face in faces:  # the same two faces as at full size (their order may differ: similar sizes)
        eyes, _ = _eyes(face.landmarks)
        hits = [i for i, full in enumerate(hog_faces["laos"]) if _contains(full.box, (eyes + 0.5) * scale - 0.5)]
        assert len(hits) == 1
        matched.add(hits[0])
        assert align_face(small, face, 64).image.shape == (64, 64, 3)
    assert matched == {0, 1}


def test_no_face_is_a_clear_error():
    with pytest.raises(NoFaceError, match="no face found .*--detector cnn"):
        detect_faces(np.full((120, 160, 3), 128, np.uint8))
    with pytest.raises(NoFaceError):
        detect_faces(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))  # tiny
    assert issubclass(NoFaceError, ValueError)


def test_bad_arguments_are_value_errors(photos, hog_faces):
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(photos["laos"], detector="haar")
    with pytest.raises(ValueError, match="upsample"):
        detect_faces(photos["laos"], upsample=4)
    face = hog_faces["laos"][0]
    with pytest.raises(ValueError, match="unknown framing"):
        align_face(photos["laos"], face, 64, framing="celeba")
    with pytest.raises(ValueError, match="res"):
        align_face(photos["laos"], face, 0)


def test_ganbrush_framing_matches_the_training_crops(photos, hog_faces):
    """Aligned at the generator's 64 px, upsampled, measured with the 68-point predictor."""
    centres, distances = [], []
    for name, faces in hog_faces.items():
        for face in faces:
            if face.box[2] - face.box[0] < 80:  # too small in the photo for a reliable measurement
                continue
            aligned = align_face(photos[name], face, 64)
            assert aligned.image.shape == (64, 64, 3) and aligned.image.dtype == np.uint8
            measured = _measure_eyes(aligned.image)
            assert measured is not None, f"no face found again in the aligned {name}"
            centres.append(measured[0])
            distances.append(measured[1])
    assert len(centres) >= 6
    centres, distances = np.array(centres), np.array(distances)
    np.testing.assert_allclose(np.median(centres, 0), GANBRUSH_EYES, atol=0.02)
    assert np.median(distances) == pytest.approx(GANBRUSH_EYE_DISTANCE, abs=0.025)
    assert np.abs(centres - GANBRUSH_EYES).max() < 0.04 and np.abs(distances - GANBRUSH_EYE_DISTANCE).max() < 0.07


def test_ffhq_framing_is_the_looser_ffhq_crop(photos, hog_faces):
    face = hog_faces["laos"][0]
    aligned = align_face(photos["laos"], face, 128, framing="ffhq")
    centre, distance = _measure_eyes(aligned.image)
    # FFHQ: half side 2 eye distances -> eye distance 1/4 of the side; centre 0.1 eye-to-mouth below the eyes.
    assert distance == pytest.approx(0.25, abs=0.02)
    assert centre[0] == pytest.approx(0.5, abs=0.02) and 0.44 < centre[1] < 0.5
    tight = align_face(photos["laos"], face, 128)
    assert np.linalg.norm(aligned.quad[0] - aligned.quad[3]) > 1.5 * np.linalg.norm(tight.quad[0] - tight.quad[3])


def test_transform_maps_aligned_pixels_onto_the_photo(photos, hog_faces):
    photo, face = photos["laos"], hog_faces["laos"][0]
    side = np.linalg.norm(align_face(photo, face, 8).quad[3] - align_face(photo, face, 8).quad[0])
    res = int(round(side))  # about one photo pixel per aligned pixel: no resampling blur to speak of
    aligned = align_face(photo, face, res)
    assert isinstance(aligned, AlignedFace) and aligned.framing == "ganbrush" and aligned.face is face
    np.testing.assert_allclose(aligned.to_photo @ aligned.from_photo, np.eye(3), atol=1e-9)
    corners = np.array([[-0.5, -0.5, 1], [-0.5, res - 0.5, 1], [res - 0.5, res - 0.5, 1], [res - 0.5, -0.5, 1]])
    np.testing.assert_allclose((aligned.to_photo @ corners.T).T[:, :2], aligned.quad, atol=1e-6)
    # Every aligned pixel shows the photo pixel the transform names (away from the photo's border).
    vv, uu = np.mgrid[0:res, 0:res]
    p = aligned.to_photo @ np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)])
    x, y = np.round(p[0]).astype(int), np.round(p[1]).astype(int)
    inside = (x >= 0) & (x < photo.shape[1]) & (y >= 0) & (y < photo.shape[0])
    assert inside.mean() > 0.5
    diff = np.abs(aligned.image.reshape(-1, 3)[inside].astype(int) - photo[y[inside], x[inside]].astype(int))
    assert diff.mean() < 8
    # The eyes land where the transform says they should.
    eyes, _ = _eyes(face.landmarks)
    u, v, _ = aligned.from_photo @ np.array([*eyes, 1.0])
    assert (u + 0.5) / res == pytest.approx(0.5, abs=0.03) and (v + 0.5) / res == pytest.approx(0.275, abs=0.03)


def test_large_downscale_is_antialiased(photos, hog_faces):
    photo, face = photos["woman_portrait"], hog_faces["woman_portrait"][0]
    small = align_face(photo, face, 16)  # ~1000 photo px onto 16: a plain warp would alias badly
    reference = cv2.resize(align_face(photo, face, 256).image, (16, 16), interpolation=cv2.INTER_AREA)
    error = np.abs(small.image.astype(int) - reference.astype(int)).mean()
    naive = cv2.warpAffine(photo, small.to_photo[:2], (16, 16), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    assert error < 1.5 and error < 0.2 * np.abs(naive.astype(int) - reference.astype(int)).mean()


def test_quad_leaving_the_photo_is_filled_from_the_photo(photos, hog_faces):
    photo, face = photos["laos"], hog_faces["laos"][0]
    cut = int(face.landmarks[:, 0].min()) + 10  # crop through the jaw: most of the square is outside
    shifted = Face(box=face.box, landmarks=face.landmarks - [cut, 0], score=face.score)
    cropped = np.ascontiguousarray(photo[:, cut:])
    aligned = align_face(cropped, shifted, 64)
    assert aligned.quad[:, 0].min() < -10
    left = aligned.image[:, :8].astype(int)
    assert left.mean() > 20 and left.std() > 3  # mirrored photo content, not a black or flat band
    assert np.abs(aligned.image[:, 32:].astype(int) - align_face(photo, face, 64).image[:, 32:]).mean() < 6


def test_paste_back_leaves_everything_outside_the_mask_bit_identical(photos, hog_faces):
    photo = photos["laos"]
    aligned = align_face(photo, hog_faces["laos"][1], 64)
    green = np.zeros((37, 37, 3), np.uint8)  # any size, resampled
    green[..., 1] = 255
    out = paste_back(photo, aligned, green, feather=0.1)
    mask = paste_mask(photo.shape, aligned, feather=0.1)
    assert out.shape == photo.shape and out.dtype == np.uint8 and out is not photo
    assert mask.shape == photo.shape[:2] and mask.min() == 0 and mask.max() == 1
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    assert (out[mask == 1] == [0, 255, 0]).all()
    ramp = (mask > 0) & (mask < 1)
    assert ramp.any() and (out[ramp] != photo[ramp]).any(axis=1).mean() > 0.9
    # The face region covers the face: the eyes and mouth are at full weight.
    for point in (*hog_faces["laos"][1].landmarks[36:48], *hog_faces["laos"][1].landmarks[48:68]):
        assert mask[int(round(point[1])), int(round(point[0]))] == 1


def test_paste_back_of_the_aligned_face_restores_the_photo(photos, hog_faces):
    photo = photos["model_face"]
    aligned = align_face(photo, hog_faces["model_face"][0], 256)
    out = paste_back(photo, aligned, aligned.image)
    mask = paste_mask(photo.shape, aligned)
    # 256 px carries less detail than the ~800 px face: the round trip is blurred, not displaced.
    diff = np.abs(out.astype(int) - photo.astype(int))[mask == 1]
    assert diff.mean() < 6
    assert np.array_equal(out[mask == 0], photo[mask == 0])


def test_paste_back_when_the_square_leaves_the_photo(photos, hog_faces):
    photo, face = photos["laos"], hog_faces["laos"][0]
    cut = int(face.landmarks[:, 0].min()) + 10
    shifted = Face(box=face.box, landmarks=face.landmarks - [cut, 0], score=face.score)
    cropped = np.ascontiguousarray(photo[:, cut:])
    aligned = align_face(cropped, shifted, 64)
    out = paste_back(cropped, aligned, np.full((64, 64, 3), 7, np.uint8))
    mask = paste_mask(cropped.shape, aligned)
    assert np.array_equal(out[mask == 0], cropped[mask == 0]) and (out[mask == 1] == 7).all()
    with pytest.raises(ValueError, match="square uint8"):
        paste_back(cropped, aligned, np.zeros((64, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="feather"):
        paste_back(cropped, aligned, aligned.image, feather=0)


def test_detection_from_several_threads_at_once_gives_the_same_faces(photos, hog_faces):
    # dlib crashes (segfault) when two threads detect at once; detect_faces serialises them.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(detect_faces, [photos["laos"]] * 4))
    for faces in results:
        assert [f.box for f in faces] == [f.box for f in hog_faces["laos"]]
        np.testing.assert_array_equal(faces[0].landmarks, hog_faces["laos"][0].landmarks)


# -- native-resolution crops and exact pastes (issue 16) ----------------------------------------------
def test_align_native_cuts_the_same_square_at_the_photos_own_scale(photos, hog_faces):
    from inversion.align import MAX_NATIVE_SIDE, align_native, native_res

    photo = photos["model_face"]
    aligned = align_face(photo, hog_faces["model_face"][0], 64)
    side = round(aligned.scale * aligned.res)  # the square's side in photo px
    assert 300 < side < MAX_NATIVE_SIDE
    assert native_res(aligned) == side
    native = align_native(photo, aligned)
    assert native.res == side and native.image.shape == (side, side, 3) and native.image.dtype == np.uint8
    np.testing.assert_array_equal(native.quad, aligned.quad)
    assert native.framing == aligned.framing and native.face is aligned.face
    assert native.scale == pytest.approx(1.0, abs=1.0 / side)  # one photo px per native px
    # The same transform family: a native pixel lands where the aligned one at the same fraction does.
    np.testing.assert_allclose(native.to_photo @ [side / 2 - 0.5, side / 2 - 0.5, 1],
                               aligned.to_photo @ [31.5, 31.5, 1], atol=1e-6)
    # Its content is the photo's, at full detail: shrunk to 64 px it is the 64 px alignment.
    small = cv2.resize(native.image, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - aligned.image).mean() < 3
    # Capped: a smaller max_side shrinks the crop, not the square.
    capped = align_native(photo, aligned, max_side=200)
    assert native_res(aligned, 200) == 200 and capped.res == 200 and capped.image.shape == (200, 200, 3)
    np.testing.assert_array_equal(capped.quad, aligned.quad)
    # A small face: native_res is round(scale * res) even when that is below the generator's res.
    tiny = align_face(cv2.resize(photo, None, fx=0.05, fy=0.05, interpolation=cv2.INTER_AREA),
                      Face(box=tuple(0.05 * np.array(aligned.face.box)), landmarks=(aligned.face.landmarks + 0.5)
                           * 0.05 - 0.5, score=aligned.face.score), 64)
    assert native_res(tiny) == max(4, round(tiny.scale * 64)) < 64


def test_paste_inside_changes_only_the_region_and_exactly(photos, hog_faces):
    from inversion.align import paste_inside

    photo = photos["laos"]
    aligned = align_face(photo, hog_faces["laos"][0], 64)
    region = np.zeros(photo.shape[:2], bool)
    cx, cy = (int(v) for v in hog_faces["laos"][0].landmarks[30])  # the nose tip
    region[cy - 15:cy + 15, cx - 25:cx + 5] = True
    region[cy + 20, cx - 30:cx + 30] = True  # a thin line: no feathering, no bleeding
    green = np.zeros((50, 50, 3), np.uint8)  # any size: resampled into the aligned frame
    green[..., 1] = 255
    out = paste_inside(photo, aligned, green, region)
    assert out.shape == photo.shape and out.dtype == np.uint8 and out is not photo
    np.testing.assert_array_equal(out[~region], photo[~region])
    assert (out[region] == [0, 255, 0]).all()
    # The face image lands through the aligned frame: paste the aligned face itself back over the
    # square and it reproduces the photo's content (blurred by the 64 px round trip).
    inside = paste_mask(photo.shape, aligned) == 1
    again = paste_inside(photo, aligned, aligned.image, inside)
    np.testing.assert_array_equal(again[~inside], photo[~inside])
    assert np.abs(again[inside].astype(int) - photo[inside]).mean() < 12
    # An empty region returns a copy of the photo.
    empty = paste_inside(photo, aligned, green, np.zeros(photo.shape[:2], bool))
    assert empty is not photo and np.array_equal(empty, photo)


def test_paste_inside_rejects_a_region_of_another_size(photos, hog_faces):
    from inversion.align import paste_inside

    photo = photos["laos"]
    aligned = align_face(photo, hog_faces["laos"][0], 64)
    with pytest.raises(ValueError, match="region must be bool"):
        paste_inside(photo, aligned, aligned.image, np.ones((64, 64), bool))
    with pytest.raises(ValueError, match="region must be bool"):
        paste_inside(photo, aligned, aligned.image, np.ones(photo.shape[1::-1][:2], bool))  # (W, H)
