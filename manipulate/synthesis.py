"""Semantic synthesis of an aligned face: its label map, and SPADE drawing an edited map in its style.

Conventions: faces are float ``[1, 3, r, r]`` RGB in [-1, 1] (or uint8 ``[r, r, 3]``); label maps
uint8 ``[s, s]`` class indices of :mod:`manipulate.labels` (any square size: they are resized to
the model's resolution by majority vote); region masks bool ``[r, r]``, **True = replaced**.

    from manipulate.synthesis import face_label_map, synthesize
    labels = face_label_map(aligned.image, landmarks)          # uint8 [64, 64]
    labels[...] = ...                                           # e.g. a wider mouth
    image = synthesize(face, labels)                            # [1, 3, 64, 64], the face's own style
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ganbrush_core.images import uint8_to_float
from manipulate import labels as L
from manipulate.face_parser import FaceParser, label_face, load_parser
from manipulate.spade import Synthesizer, load_synthesizer

DEFAULT_SYNTHESIZER = "spade64.safetensors"
#: A style given as a number draws z from N(0, I) with that seed.
StyleSpec = torch.Tensor | int | None


class SynthesisError(ValueError):
    """Inputs that cannot be synthesised (one line, saying what to do)."""


def default_synthesizer_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / DEFAULT_SYNTHESIZER


@lru_cache(maxsize=4)
def _cached_synthesizer(path: str, device: str) -> Synthesizer:
    return load_synthesizer(path, device)


def get_synthesizer(model: Synthesizer | str | os.PathLike | None = None, device: str | torch.device = "cpu"
                    ) -> Synthesizer:
    """``model`` itself, or the synthesizer file it names (``None`` / ``"default"``: the shipped one)."""
    if isinstance(model, torch.nn.Module):
        return model
    path = default_synthesizer_path() if model in (None, "default") else Path(model)
    if not path.is_file():
        raise SynthesisError(f"{path}: no such synthesizer file; train one with `ganbrush train spade`")
    return _cached_synthesizer(str(path.resolve()), str(torch.device(device)))


@lru_cache(maxsize=2)
def _cached_parser(path: str, device: str) -> FaceParser:
    return load_parser(path, device)


def get_parser(parser: FaceParser | str | os.PathLike | None = None, device: str | torch.device = "cpu"
               ) -> FaceParser:
    """``parser`` itself, or the parser file it names (``None`` / ``"default"``: the shipped one)
    on ``device``."""
    if isinstance(parser, FaceParser):
        return parser
    return _cached_parser(str(parser) if parser not in (None, "default") else "default", str(torch.device(device)))


def face_label_map(face: np.ndarray, landmarks: np.ndarray, size: int | None = None,
                   parser: FaceParser | str | os.PathLike | None = None) -> np.ndarray:
    """The label map (uint8 ``[size, size]``, default the face's size) of an aligned face (uint8
    ``[r, r, 3]``) whose 68 landmarks are given in its pixels."""
    return label_face(get_parser(parser), np.asarray(face), np.asarray(landmarks), size)


def _face_tensor(face: torch.Tensor | np.ndarray, res: int) -> torch.Tensor:
    x = uint8_to_float(face) if isinstance(face, np.ndarray) else face
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[:2] != (1, 3) or x.shape[2] != x.shape[3]:
        raise SynthesisError(f"expected one square RGB face [1, 3, r, r], got {tuple(x.shape)}")
    x = x.float()
    if x.shape[-1] > res:
        x = F.interpolate(x, size=(res, res), mode="area")
    elif x.shape[-1] < res:
        x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    return x


def labels_tensor(labels: np.ndarray, res: int) -> torch.Tensor:
    """One-hot ``[1, NUM_CLASSES, res, res]`` of a square label map of any size."""
    lab = L.check_labels(labels)
    if lab.shape[0] != lab.shape[1]:
        raise SynthesisError(f"the label map is {lab.shape[1]}x{lab.shape[0]} px; it must be square (the aligned "
                             "face's frame, as `ganbrush labels` writes it)")
    return L.one_hot(torch.from_numpy(L.resize_labels(lab, res)).long()[None])


@torch.no_grad()
def style_of(face: torch.Tensor | np.ndarray, model: Synthesizer | str | None = None) -> torch.Tensor:
    """The style code ``z`` ``[1, z_dim]`` of an aligned face (the style encoder's mean)."""
    net = get_synthesizer(model)
    device = next(net.parameters()).device
    return net.encode_style(_face_tensor(face, net.cfg.resolution).to(device)).float()


@torch.no_grad()
def synthesize(face: torch.Tensor | np.ndarray | None, labels: np.ndarray, style: StyleSpec = None,
               model: Synthesizer | str | os.PathLike | None = None) -> torch.Tensor:
    """The face that ``labels`` describes, drawn by the synthesizer at its resolution: float
    ``[1, 3, R, R]`` in [-1, 1] on the CPU.

    ``style``: ``None`` (the style of ``face``, an aligned face), a ``z`` tensor ``[1, z_dim]``,
    or an int seed (a random style; ``face`` may then be ``None``).
    """
    net = get_synthesizer(model)
    device = next(net.parameters()).device
    if isinstance(style, bool) or not (style is None or isinstance(style, (int, torch.Tensor))):
        raise SynthesisError(f"style must be None (the face's own), a z tensor or an int seed, got {style!r}")
    if isinstance(style, int):
        z = torch.randn(1, net.cfg.z_dim, generator=torch.Generator().manual_seed(style))
    elif isinstance(style, torch.Tensor):
        z = style.reshape(1, -1).float()
        if z.shape[1] != net.cfg.z_dim:
            raise SynthesisError(f"style has {z.shape[1]} values; this synthesizer's z has {net.cfg.z_dim}")
    else:
        if face is None:
            raise SynthesisError("give the face whose style to use, or a style seed")
        z = style_of(face, net)
    onehot = labels_tensor(labels, net.cfg.resolution)
    return net(onehot.to(device), z.to(device)).float().clamp(-1, 1).cpu()


def changed_region(before: np.ndarray, after: np.ndarray, size: int, margin: float = 0.06) -> np.ndarray:
    """bool ``[size, size]``: where two label maps differ, at ``size``, grown by ``margin`` (a
    fraction of the side) so the synthesised part brings its surroundings along."""
    a, b = L.check_labels(before), L.check_labels(after)
    if a.shape != b.shape:
        raise SynthesisError(f"the edited map is {b.shape[1]}x{b.shape[0]} px, the face's {a.shape[1]}x{a.shape[0]}; "
                             "edit the map `ganbrush labels` wrote, without resizing it")
    diff = (a != b).astype(np.uint8) * 255
    small = cv2.resize(diff, (size, size), interpolation=cv2.INTER_AREA) > 0
    grow = int(round(margin * size))
    if grow > 0 and small.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        small = cv2.dilate(small.astype(np.uint8), kernel) > 0
    return small
