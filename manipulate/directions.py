"""Latent directions in W: where they come from and how they are stored.

A :class:`Direction` is a unit vector in W (``[w_dim]``) with a default layer range (the ``ws``
indices it is applied to) and a *scale*: one unit of edit strength moves ``w`` by ``scale``
along the vector, so strengths are comparable across directions (for GANSpace and SeFa the
scale is the standard deviation of sampled ``w`` along the vector).

Layer indices are ``ws`` indices of :meth:`Generator.synthesis`: index ``k`` feeds the ``k``-th
styled convolution (coarse to fine: 0 is the 4x4 layer), and the last index feeds only the final
toRGB. Ranges are half-open ``(start, stop)`` like Python slices.

Sources:

- :func:`sefa`: closed-form factorisation (Shen and Zhou 2021): the top eigenvectors of
  ``A^T A``, ``A`` the stacked style-affine weights of the chosen layers. No data, no sampling.
- :func:`ganspace`: PCA of sampled ``w`` (Harkonen et al. 2020), applied to a layer range.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganbrush_core.devices import on_device
from ganbrush_core.io import atomic_write, refuse_overwrite
from ganbrush_core.npz import Member, NpzFileError, read_npz
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator, sample_w

FORMAT_NAME = "ganbrush.directions"
FORMAT_VERSION = 1

LayerRange = tuple[int, int]


class DirectionsFileError(ValueError):
    """A directions file that cannot be used (unreadable, another format, another generator)."""


#: Largest directions file :func:`load_directions` reads (its arrays, decompressed): thousands of
#: 512-d vectors fit; a hostile file cannot cost more.
MAX_FILE_BYTES = 64 << 20
_REDO = "recompute it with `ganbrush directions`"
# What save_directions writes; anything else in a file is skipped without being decompressed.
_MEMBERS: dict[str, Member] = {"meta": Member("U", ndim=0, max_bytes=16 << 20),
                               r"vector/.+": Member("f", ndim=1, max_bytes=1 << 20)}


@dataclass
class Direction:
    """A unit vector in W with its default layer range and strength scale."""

    name: str
    vector: torch.Tensor  # [w_dim], unit norm
    layers: LayerRange
    scale: float = 1.0
    source: str = ""
    info: dict = field(default_factory=dict)  # e.g. explained variance, classifier accuracy


def check_layers(G: Generator, layers: LayerRange | None) -> LayerRange:
    """Validate a half-open ``ws`` index range; ``None`` means all layers."""
    if layers is None:
        return (0, G.num_ws)
    start, stop = (int(v) for v in layers)
    if not 0 <= start < stop <= G.num_ws:
        raise ValueError(f"layer range {start}-{stop} is outside this generator's 0-{G.num_ws} "
                         f"(half-open ws indices, coarse to fine)")
    return (start, stop)


def parse_layers(text: str) -> LayerRange:
    """``"0-5"`` (inclusive, as users write it) -> ``(0, 6)``; ``"3"`` -> ``(3, 4)``."""
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return (parts[0], parts[0] + 1)
    if len(parts) == 2 and parts[0] <= parts[1]:
        return (parts[0], parts[1] + 1)
    raise ValueError(f"bad layer range {text!r}: write FIRST-LAST (inclusive), e.g. 0-5, or one index")


def style_affine_weights(G: Generator, layers: LayerRange) -> torch.Tensor:
    """The style-affine weight matrices (``[in_channels, w_dim]`` each, with their equalised-lr
    gain) of the styled convolutions fed by ``ws[start:stop]``, stacked to ``[sum_in, w_dim]``."""
    start, stop = check_layers(G, layers)
    convs = G.synthesis_network.styled_convs()
    picked = [convs[k] for k in range(start, min(stop, len(convs)))]
    if not picked:
        raise ValueError(f"layers {start}-{stop} feed no styled convolution (index {len(convs)} is toRGB only)")
    return torch.cat([c.conv.affine.weight * c.conv.affine.weight_gain for c in picked]).detach().float()


def _scales(vectors: torch.Tensor, w: torch.Tensor) -> list[float]:
    return [float(s) for s in ((w - w.mean(0)) @ vectors.T).std(0)]


@torch.no_grad()
def sefa(G: Generator, num: int = 10, layers: LayerRange | None = None, scale_samples: int = 5000,
         seed: int = 0, device: str | torch.device | None = None) -> list[Direction]:
    """The ``num`` SeFa directions of ``layers`` (default: all), strongest first.

    Each weight row is normalised first, as in the paper's release, so wide layers do not dominate.
    ``scale`` is measured on ``scale_samples`` sampled ``w`` (only for strength units), on
    ``device`` (``None``: ``G``'s). The vectors are on the CPU.
    """
    layers = check_layers(G, layers)
    G = on_device(G, device)
    a = style_affine_weights(G, layers)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    eigvals, eigvecs = torch.linalg.eigh(a.T @ a)  # ascending
    order = eigvals.argsort(descending=True)[:num]
    vectors = eigvecs[:, order].T.contiguous()
    scales = _scales(vectors, sample_w(G, scale_samples, seed))
    vectors = vectors.cpu()
    total = float(eigvals.sum())
    return [Direction(f"sefa{i}", v, layers, s, "sefa", {"eigenvalue_share": float(eigvals[j]) / total})
            for i, (j, v, s) in enumerate(zip(order.tolist(), vectors, scales))]


@torch.no_grad()
def ganspace(G: Generator, num: int = 10, layers: LayerRange | None = None, samples: int = 20_000,
             seed: int = 0, device: str | torch.device | None = None) -> list[Direction]:
    """The top ``num`` principal components of ``samples`` sampled ``w``, for ``layers``.

    The paper applies each component to a hand-chosen layer range; the default here is all layers.
    The mapping network runs on ``device`` (``None``: ``G``'s); the PCA and the vectors on the CPU.
    """
    layers = check_layers(G, layers)
    w = sample_w(on_device(G, device), samples, seed).cpu().double()
    centred = w - w.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    var = s.square() / (samples - 1)
    vectors = vh[:num].float()
    # Sign convention: the component's largest-magnitude coordinate is positive (reproducible).
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    vectors = vectors * signs
    return [Direction(f"ganspace{i}", v, layers, float(var[i].sqrt()), "ganspace",
                      {"explained_variance": float(var[i] / var.sum())}) for i, v in enumerate(vectors)]


def save_directions(path: str | os.PathLike, directions: list[Direction], G: Generator, force: bool = False) -> Path:
    """Write ``directions`` (for generator ``G``) as ``.npz``: one ``[w_dim]`` array per name
    plus a JSON ``meta`` with the generator hash, layer ranges, scales and sources."""
    path = Path(path)
    refuse_overwrite(path, force)
    names = [d.name for d in directions]
    if len(set(names)) != len(names):
        raise ValueError(f"direction names must be unique, got {names}")
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "generator_hash": generator_hash(G),
            "directions": [{"name": d.name, "layers": list(d.layers), "scale": d.scale, "source": d.source,
                            "info": d.info} for d in directions]}
    arrays = {f"vector/{d.name}": d.vector.detach().cpu().float().numpy() for d in directions}
    with atomic_write(path) as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _damaged(path: Path, what: str) -> DirectionsFileError:
    return DirectionsFileError(f"{path}: damaged ganbrush directions file ({what}); {_REDO}")


def _read(path: Path, expected: dict[str, Member]) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked ``meta`` object and the arrays of ``expected`` members (bounded memory)."""
    try:
        arrays = read_npz(path, expected, MAX_FILE_BYTES, what="ganbrush directions file", hint=_REDO)
    except NpzFileError as e:
        raise DirectionsFileError(str(e)) from None
    if "meta" not in arrays:
        raise DirectionsFileError(f"{path}: not a readable ganbrush directions file (no metadata); {_REDO}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, RecursionError):
        raise _damaged(path, "its metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise _damaged(path, f"its metadata is a {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT_NAME:
        raise DirectionsFileError(f"{path}: not a ganbrush directions file (format {str(meta.get('format'))[:40]!r})")
    if not isinstance(meta.get("generator_hash"), str):
        raise _damaged(path, "its metadata lacks 'generator_hash'")
    return meta, arrays


def read_generator_hash(path: str | os.PathLike) -> str:
    """The generator hash a directions file was made for, reading only its metadata."""
    meta, _ = _read(Path(path), {"meta": _MEMBERS["meta"]})
    return meta["generator_hash"]


def _entry(path: Path, d: object, vectors: dict[str, np.ndarray]) -> Direction:
    """One checked ``meta["directions"]`` entry with its vector."""
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        raise _damaged(path, "a direction without a name")
    name = d["name"]
    layers, scale = d.get("layers"), d.get("scale")
    if not (isinstance(layers, list) and len(layers) == 2 and all(type(v) is int for v in layers)):
        raise _damaged(path, f"direction {name[:40]!r} has no layer range")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise _damaged(path, f"direction {name[:40]!r} has no scale")
    if name not in vectors:
        raise _damaged(path, f"direction {name[:40]!r} has no vector")
    info = d.get("info", {})
    return Direction(name, torch.from_numpy(np.asarray(vectors[name], dtype=np.float32)), (layers[0], layers[1]),
                     float(scale), str(d.get("source", "")), info if isinstance(info, dict) else {})


def load_directions(path: str | os.PathLike, G: Generator | None = None) -> dict[str, Direction]:
    """Read a file of :func:`save_directions`; with ``G``, refuse one made for another generator.

    Memory stays bounded whatever the file holds (only ``meta`` and ``vector/*`` members are read,
    each checked from its header first); any problem is one :class:`DirectionsFileError` line."""
    path = Path(path)
    meta, arrays = _read(path, _MEMBERS)
    if G is not None and meta["generator_hash"] != generator_hash(G):
        raise DirectionsFileError(f"{path} holds directions of generator {meta['generator_hash']}, not of the "
                                  f"given one ({generator_hash(G)}); recompute them with `ganbrush directions`")
    if not isinstance(meta.get("directions"), list):
        raise _damaged(path, "its metadata lacks the list of directions")
    vectors = {k.split("/", 1)[1]: v for k, v in arrays.items()}
    directions = [_entry(path, d, vectors) for d in meta["directions"]]
    if G is not None and any(d.vector.shape != (G.w_dim,) for d in directions):
        raise _damaged(path, f"a vector is not {G.w_dim}-dimensional like this generator's w")
    return {d.name: d for d in directions}
