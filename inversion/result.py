"""The result of an inversion, and its ``.npz`` file.

An :class:`Inversion` belongs to one generator: it records that generator's hash, and loading it
for another generator is refused. For PTI it carries the tuned generator as a weight delta, so
:meth:`Inversion.generator` rebuilds the tuned network from the original.

File layout (``numpy.savez``, read with ``allow_pickle=False``): ``ws`` ``[N, num_ws, w_dim]``
float32; ``noise_<i>`` ``[N, 1, r, r]``; ``reconstruction`` and ``target`` ``[N, 3, H, W]`` float32
in [-1, 1]; ``history_<key>`` per-step losses (NaN where a phase did not log that key);
``delta/<param name>`` for PTI; ``meta`` a JSON string (format, version, generator hash, method,
steps, final losses, seconds, phases).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganbrush_core.io import atomic_write, refuse_overwrite
from ganbrush_core.npz import Member, NpzFileError, read_npz
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator

FORMAT_NAME = "ganbrush.inversion"
FORMAT_VERSION = 1

#: Largest |value| in latents ``ws``: far beyond any ``w`` the mapping network or an inversion
#: produces (a few units), and well below what renders as noise or overflows to black.
MAX_ABS_LATENT = 1e4


class InversionFileError(ValueError):
    """An inversion file that cannot be used (unreadable, another format, another generator)."""


#: Largest inversion file :meth:`Inversion.load` reads (its arrays, decompressed): a batch of
#: 1024 px faces with a PTI delta fits many times over; a hostile file cannot cost more.
MAX_FILE_BYTES = 1 << 30
_REDO = "invert the photo again (ganbrush invert)"
# What Inversion.save writes; anything else in a file is skipped without being decompressed.
_MEMBERS: dict[str, Member] = {
    "meta": Member("U", ndim=0, max_bytes=16 << 20), "ws": Member("f", ndim=3),
    "reconstruction": Member("f", ndim=4), "target": Member("f", ndim=4), r"noise_\d+": Member("f", ndim=4),
    r"history_.+": Member("f", ndim=1), r"delta/.+": Member("f"),
}


def _read_meta(path: Path, meta_array: np.ndarray | None) -> dict:
    """The ``meta`` JSON of an inversion file, checked field by field (types and defaults), so a
    damaged or forged file is one clear error rather than a KeyError deep inside."""
    if meta_array is None:
        raise InversionFileError(f"{path} is a .npz but not a ganbrush inversion (no metadata); {_REDO}")
    try:
        meta = json.loads(str(meta_array))
    except (ValueError, RecursionError):
        raise InversionFileError(f"{path}: damaged inversion file (its metadata is not JSON); {_REDO}") from None
    if not isinstance(meta, dict):
        raise InversionFileError(f"{path}: damaged inversion file (its metadata is a {type(meta).__name__}, "
                                 f"not an object); {_REDO}")
    if meta.get("format") != FORMAT_NAME:
        raise InversionFileError(f"{path} is not a ganbrush inversion (format {str(meta.get('format'))[:40]!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int):
        raise InversionFileError(f"{path}: damaged inversion file (version {str(version)[:20]!r}); {_REDO}")
    if version > FORMAT_VERSION:
        raise InversionFileError(f"{path} was written by a newer ganbrush (inversion format {version}); "
                                 "upgrade ganbrush to read it")

    def field_(key: str, ok: Callable[[object], bool], default: object = None, required: bool = True) -> object:
        if key not in meta and not required:
            return default
        value = meta.get(key)
        if not ok(value):
            state = "lacks" if key not in meta else "has a bad"
            raise InversionFileError(f"{path}: damaged inversion file (its metadata {state} {key!r}); {_REDO}")
        return value

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def is_number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def str_list(v: object) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    return {
        "num_noises": field_("num_noises", lambda v: is_int(v) and v <= 1024),
        "method": field_("method", lambda v: isinstance(v, str)),
        "steps": field_("steps", is_int),
        "generator_hash": field_("generator_hash", lambda v: isinstance(v, str)),
        "phases": field_("phases", str_list, [], required=False),
        "history_keys": field_("history_keys", str_list, [], required=False),
        "final_losses": dict(field_("final_losses", lambda v: isinstance(v, dict) and all(
            is_number(x) for x in v.values()), {}, required=False)),
        "seconds": float(field_("seconds", is_number, float("nan"), required=False)),
    }


@dataclass
class Inversion:
    """Latents that reproduce an image with a given generator (see :func:`inversion.invert`)."""

    ws: torch.Tensor
    noises: list[torch.Tensor]
    reconstruction: torch.Tensor
    target: torch.Tensor | None
    method: str
    steps: int
    generator_hash: str
    history: list[dict] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)
    generator_delta: dict[str, torch.Tensor] | None = None
    seconds: float = float("nan")

    def __post_init__(self) -> None:
        # Every way an Inversion is made (invert(), a loaded file, dataclasses.replace) passes here,
        # so a broken one is refused before it renders a black or noisy face.
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InversionFileError` when the latents cannot render a face: non-finite
        values (NaN, inf) in ``ws``, the noise maps, the reconstruction or a PTI delta, or ``|ws|``
        above :data:`MAX_ABS_LATENT`."""
        parts: list[tuple[str, torch.Tensor]] = [("latents (ws)", self.ws), ("reconstruction", self.reconstruction)]
        parts += [("noise maps", m) for m in self.noises]
        parts += [("tuned generator (PTI delta)", d) for d in (self.generator_delta or {}).values()]
        for what, t in parts:
            if not bool(torch.isfinite(t).all()):
                raise InversionFileError(f"this inversion's {what} hold NaN or infinite values; it cannot be "
                                         "rendered: invert the photo again")
        peak = float(self.ws.abs().max()) if self.ws.numel() else 0.0
        if peak > MAX_ABS_LATENT:
            raise InversionFileError(f"this inversion's latents (ws) reach {peak:.3g}, beyond any real latent "
                                     f"(limit {MAX_ABS_LATENT:g}); invert the photo again")

    def __len__(self) -> int:
        return self.ws.shape[0]

    def check_generator(self, G: Generator) -> None:
        actual = generator_hash(G)
        if actual != self.generator_hash:
            raise InversionFileError(f"this inversion was made with generator {self.generator_hash}, but the given "
                                     f"generator is {actual}; invert the photo again with this generator")

    def generator(self, G: Generator) -> Generator:
        """The generator to render these latents with: ``G`` itself, or for PTI a tuned copy."""
        self.check_generator(G)
        if not self.generator_delta:
            return G
        tuned = copy.deepcopy(G)
        params = dict(tuned.named_parameters())
        with torch.no_grad():
            for name, delta in self.generator_delta.items():
                params[name].add_(delta.to(params[name]))
        return tuned

    def render(self, G: Generator, ws: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesise ``ws`` (default: this inversion's) with the right generator and noise maps."""
        gen = self.generator(G)
        ws = self.ws if ws is None else ws
        device = gen.w_avg.device
        with torch.no_grad():
            return gen.synthesis(ws.to(device), noises=[m.to(device) for m in self.noises]).cpu()

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the ``.npz`` atomically (mode 0644); an existing file is kept unless ``force``."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"inversion files end in .npz, got {path.name}")
        refuse_overwrite(path, force)
        arrays: dict[str, np.ndarray] = {"ws": self.ws.float().numpy(),
                                         "reconstruction": self.reconstruction.float().numpy()}
        if self.target is not None:
            arrays["target"] = self.target.float().numpy()
        for i, m in enumerate(self.noises):
            arrays[f"noise_{i}"] = m.float().numpy()
        keys = sorted({k for row in self.history for k in row if k != "phase"})
        for key in keys:
            arrays[f"history_{key}"] = np.array([row.get(key, np.nan) for row in self.history], dtype=np.float64)
        for name, delta in (self.generator_delta or {}).items():
            arrays[f"delta/{name}"] = delta.float().numpy()
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "generator_hash": self.generator_hash,
                "method": self.method, "steps": self.steps, "final_losses": self.final_losses,
                "seconds": self.seconds, "num_noises": len(self.noises), "history_keys": keys,
                "phases": [row.get("phase", "") for row in self.history]}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_write(path) as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, G: Generator | None = None, max_bytes: int = MAX_FILE_BYTES) -> Inversion:
        """Read an ``.npz`` written by :meth:`save`; with ``G``, refuse one made with another generator.

        Memory stays bounded whatever the file holds: only the members :meth:`save` writes are
        read (others are skipped undecompressed), each checked from its header first, together at
        most ``max_bytes``. Any problem raises :class:`InversionFileError` (one line)."""
        path = Path(path)
        if not path.is_file():
            raise InversionFileError(f"{path}: no such inversion file")
        try:
            arrays = read_npz(path, _MEMBERS, max_bytes, what="inversion file", hint=_REDO)
        except NpzFileError as e:
            raise InversionFileError(str(e)) from None
        meta = _read_meta(path, arrays.pop("meta", None))
        missing = [k for k in ("ws", "reconstruction", *(f"noise_{i}" for i in range(meta["num_noises"])),
                               *(f"history_{k}" for k in meta["history_keys"])) if k not in arrays]
        if missing:
            raise InversionFileError(f"{path}: damaged inversion file, it lacks {', '.join(missing[:4])}; {_REDO}")
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(a, dtype=np.float32))  # float16/64 files too
        ws, reconstruction = arrays["ws"], arrays["reconstruction"]
        n = ws.shape[0]
        if reconstruction.shape[0] != n or ("target" in arrays and arrays["target"].shape != reconstruction.shape):
            raise InversionFileError(f"{path}: damaged inversion file, its latents ({n}), reconstruction and target "
                                     f"do not match; {_REDO}")
        history = [{"phase": phase} for phase in meta["phases"]]
        for key in meta["history_keys"]:
            for row, value in zip(history, arrays[f"history_{key}"].tolist()):
                if not math.isnan(value):
                    row[key] = float(value)
        delta = {k[len("delta/"):]: t(v) for k, v in arrays.items() if k.startswith("delta/")}
        inv = cls(ws=t(ws), noises=[t(arrays[f"noise_{i}"]) for i in range(meta["num_noises"])],
                  reconstruction=t(reconstruction), target=t(arrays["target"]) if "target" in arrays else None,
                  method=meta["method"], steps=meta["steps"], generator_hash=meta["generator_hash"],
                  history=history, final_losses=meta["final_losses"], generator_delta=delta or None,
                  seconds=meta["seconds"])
        if G is not None:
            inv.check_generator(G)
        return inv
