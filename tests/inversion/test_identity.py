"""Identity distance (dlib face-recognition descriptor) on faces aligned at the generator's size:
the same person, re-aligned slightly off and blurred, is clearly closer than two different people."""

from __future__ import annotations

import itertools
from dataclasses import replace

import cv2
import numpy as np
import pytest

from ganbrush_core.paths import data_root
from inversion.align import align_face, detect_faces
from inversion.identity import DESCRIPTOR_DIM, face_descriptor, identity_distance
from inversion.photos import load_photo

PHOTOS = data_root() / "photos"
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent
RES = 64  # the generator's resolution


@pytest.fixture(scope="module")
def classroom():
    photo = load_photo(PHOTOS / "classroom_in_tanzania.jpg")
    faces = [f for f in detect_faces(photo) if f.box[2] - f.box[0] >= 80]  # the children in the front row
    assert len(faces) >= 3
    return photo, faces


@pytest.fixture(scope="module")
def descriptors(classroom):
    photo, faces = classroom
    return [face_descriptor(align_face(photo, f, RES).image) for f in faces]


def _perturbed(photo, face, shift=(2.0, 1.5)):
    """The same face aligned from landmarks off by a couple of pixels, then slightly blurred."""
    moved = replace(face, landmarks=face.landmarks + np.array(shift))
    return cv2.GaussianBlur(align_face(photo, moved, RES).image, (3, 3), 0.8)


def test_descriptor_is_a_deterministic_128_vector(classroom, descriptors):
    photo, faces = classroom
    d = descriptors[0]
    assert d.shape == (DESCRIPTOR_DIM,) and d.dtype == np.float32 and np.isfinite(d).all()
    assert np.array_equal(face_descriptor(align_face(photo, faces[0], RES).image), d)
    assert 0.5 < np.linalg.norm(d) < 2  # dlib descriptors have roughly unit length


def test_same_person_is_clearly_closer_than_different_people(classroom, descriptors):
    photo, faces = classroom
    different = [float(np.linalg.norm(a - b)) for a, b in itertools.combinations(descriptors, 2)]
    same = [identity_distance(_perturbed(photo, f), d) for f, d in zip(faces, descriptors)]
    assert max(same) < 0.35, same
    assert min(different) > max(same) + 0.1, (same, different)


def test_distance_of_images_equals_distance_of_descriptors(classroom, descriptors):
    photo, faces = classroom
    a, b = (align_face(photo, f, RES).image for f in faces[:2])
    assert identity_distance(a, b) == pytest.approx(float(np.linalg.norm(descriptors[0] - descriptors[1])), abs=1e-6)
    assert identity_distance(a, a) == 0.0


def test_small_and_large_alignments_of_one_face_agree(classroom, descriptors):
    photo, faces = classroom
    big = face_descriptor(align_face(photo, faces[0], 256).image)
    assert float(np.linalg.norm(big - descriptors[0])) < 0.2
    ffhq = face_descriptor(align_face(photo, faces[0], 128, framing="ffhq").image, framing="ffhq")
    assert float(np.linalg.norm(ffhq - descriptors[0])) < 0.2


def test_bad_input_says_to_align_first():
    with pytest.raises(ValueError, match="align"):
        face_descriptor(np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="align"):
        face_descriptor(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="unknown framing"):
        face_descriptor(np.zeros((64, 64, 3), np.uint8), framing="celeba")
