"""Labelled face sets: landmarks of packed aligned faces, and their label maps (parser + landmarks).

``ganbrush data labels --faces FACES_DIR --out DIR`` reads a packed face set
(``ganbrush data faces``: uint8 ``images.npy [N, r, r, 3]``), finds the 68 landmarks of every face
and writes ``images.npy``, ``labels.npy`` (uint8 ``[N, r, r]`` class indices of
:mod:`manipulate.labels`), ``landmarks.npy`` (float32 ``[N, 68, 2]``, aligned px),
``found.npy`` (bool ``[N]``: dlib's detector found the face; where it did not, the landmarks come
from the shape predictor run on the box the detector usually returns for this framing),
``meta.json`` and a contact sheet ``labels.png``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ganbrush_core.faces import load_images
from ganbrush_core.images import save_pil
from ganbrush_core.io import atomic_path, refuse_overwrite, write_text
from inversion import dlib_models
from manipulate import labels as L
from manipulate.face_parser import label_faces, load_parser

#: Faces are upsampled to this side before dlib (its HOG window is 80 px; a 64 px face is too small).
DETECT_SIDE = 256
#: Where dlib's HOG detector puts its box on a ganbrush-framed face (fractions of the side; the
#: median over training faces): the fallback box when it finds none.
FALLBACK_BOX = (0.07, 0.07, 0.91, 0.91)
FORMAT = "ganbrush-labelled-faces"


def face_landmarks(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """68 landmarks (float32 ``[68, 2]``, pixels of ``image``) of the one face filling an aligned
    uint8 ``[r, r, 3]`` image, and whether the detector found it (else the fallback box is used)."""
    import dlib

    r = image.shape[0]
    big = cv2.resize(np.ascontiguousarray(image), (DETECT_SIDE, DETECT_SIDE), interpolation=cv2.INTER_CUBIC)
    with dlib_models.DLIB_LOCK:
        boxes = dlib_models.hog_detector()(big, 0)
        found = len(boxes) > 0
        if found:
            box = max(boxes, key=lambda b: b.area())
        else:
            box = dlib.rectangle(*(int(round(v * DETECT_SIDE)) for v in FALLBACK_BOX))
        shape = dlib_models.shape_predictor68()(big, box)
    lm = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    return ((lm + 0.5) * (r / DETECT_SIDE) - 0.5).astype(np.float32), found


def all_landmarks(images: np.ndarray, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`face_landmarks` of each of uint8 ``[N, r, r, 3]``: float32 ``[N, 68, 2]`` and bool ``[N]``."""
    lms = np.zeros((len(images), 68, 2), np.float32)
    found = np.zeros(len(images), bool)
    for i in tqdm(range(len(images)), desc="landmarks", unit="face", disable=not progress):
        lms[i], found[i] = face_landmarks(np.asarray(images[i]))
    return lms, found


def save_npy(path: Path, array: np.ndarray, force: bool = True) -> None:
    with atomic_path(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def contact_sheet(images: np.ndarray, labels: np.ndarray, count: int = 16) -> Image.Image:
    """Faces over their colour-coded maps, ``count`` of them spread over the set."""
    picks = np.linspace(0, len(images) - 1, min(count, len(images))).astype(int)
    top = np.concatenate([np.asarray(images[i]) for i in picks], 1)
    bottom = np.concatenate([L.colorize(np.asarray(labels[i])) for i in picks], 1)
    return Image.fromarray(np.concatenate([top, bottom], 0))


def build_labelled_faces(faces_dir: str | os.PathLike, out_dir: str | os.PathLike, parser_path: str | None = None,
                         limit: int | None = None, force: bool = False, progress: bool = True,
                         device: str | torch.device = "cpu") -> Path:
    """Write the labelled face set of the packed faces in ``faces_dir`` to ``out_dir`` (see the
    module docstring), the first ``limit`` faces (all by default). Landmarks are cached in
    ``out_dir`` (``landmarks.npy``): a rerun with another parser reuses them. The parser runs on
    ``device``; dlib on the CPU."""
    out = Path(out_dir)
    images = load_images(faces_dir)
    if limit is not None:
        images = images[:limit]
    targets = [out / L.IMAGES_FILE, out / L.LABELS_FILE]
    refuse_overwrite(targets, force)
    parser = load_parser(parser_path, device)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cached = out / "landmarks.npy"
    if cached.is_file() and np.load(cached, mmap_mode="r").shape == (len(images), 68, 2):
        lms, found = np.load(cached), np.load(out / "found.npy")
    else:
        lms, found = all_landmarks(images, progress)
        save_npy(cached, lms)
        save_npy(out / "found.npy", found)
    labels = label_faces(parser, images, lms, progress=progress)
    save_npy(out / L.IMAGES_FILE, np.ascontiguousarray(images), force=True)
    save_npy(out / L.LABELS_FILE, labels, force=True)
    counts = np.bincount(labels.ravel(), minlength=L.NUM_CLASSES) / labels.size
    meta = {"format": FORMAT, "faces": str(faces_dir), "count": len(images), "res": int(images.shape[1]),
            "detected": float(found.mean()), "parser": parser.source, "classes": list(L.CLASSES),
            "class_fractions": {c: round(float(f), 4) for c, f in zip(L.CLASSES, counts)},
            "seconds": round(time.perf_counter() - t0, 1)}
    write_text(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    save_pil(contact_sheet(images, labels), out / "labels.png")
    return out
