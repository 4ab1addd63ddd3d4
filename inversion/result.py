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
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganbrush_core.io import atomic_write, refuse_overwrite
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator

FORMAT_NAME = "ganbrush.inversion"
FORMAT_VERSION = 1


class InversionFileError(ValueError):
    """An inversion file that cannot be used (unreadable, another format, another generator)."""


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
    def load(cls, path: str | os.PathLike, G: Generator | None = None) -> Inversion:
        """Read an ``.npz`` written by :meth:`save`; with ``G``, refuse one made with another generator."""
        path = Path(path)
        if not path.is_file():
            raise InversionFileError(f"{path}: no such inversion file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise InversionFileError(f"{path} is not a readable inversion file (.npz): {e}") from None
        try:
            meta = json.loads(str(arrays.pop("meta")))
        except (KeyError, json.JSONDecodeError):
            raise InversionFileError(f"{path} is a .npz but not a ganbrush inversion (no metadata)") from None
        if meta.get("format") != FORMAT_NAME:
            raise InversionFileError(f"{path} is not a ganbrush inversion (format {meta.get('format')!r})")
        if meta.get("version", 0) > FORMAT_VERSION:
            raise InversionFileError(f"{path} was written by a newer ganbrush (inversion format "
                                     f"{meta['version']}); upgrade ganbrush to read it")
        t = torch.from_numpy
        phases = meta.get("phases", [])
        history = [{"phase": phase} for phase in phases]
        for key in meta.get("history_keys", []):
            for row, value in zip(history, arrays[f"history_{key}"]):
                if not np.isnan(value):
                    row[key] = float(value)
        delta = {k[len("delta/"):]: t(v) for k, v in arrays.items() if k.startswith("delta/")}
        inv = cls(ws=t(arrays["ws"]), noises=[t(arrays[f"noise_{i}"]) for i in range(meta["num_noises"])],
                  reconstruction=t(arrays["reconstruction"]),
                  target=t(arrays["target"]) if "target" in arrays else None, method=meta["method"],
                  steps=int(meta["steps"]), generator_hash=meta["generator_hash"], history=history,
                  final_losses=meta.get("final_losses", {}), generator_delta=delta or None,
                  seconds=float(meta.get("seconds", float("nan"))))
        if G is not None:
            inv.check_generator(G)
        return inv
