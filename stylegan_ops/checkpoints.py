"""Loading and saving generators: ganbrush ``.safetensors``, rosinality ``.pt``, NVIDIA ``.pkl``.

The format is recognised from the file's content, not its name. Every failure is a
:class:`CheckpointError` whose one-line message names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from ganbrush_core.devices import resolve_device
from ganbrush_core.safe_pickle import UnsafePickleError
from ganbrush_core.weights import WeightsFileError, read_safetensors, save_safetensors
from stylegan_ops.formats import nvidia, rosinality
from stylegan_ops.formats.common import DERIVED_SUFFIXES, FormatError, generator_from_state
from stylegan_ops.networks import Generator, GeneratorConfig

FORMAT_NAME = "ganbrush.generator"
FORMAT_VERSION = "1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_GENERATOR = WEIGHTS_DIR / "faces64.safetensors"
# torch.save's legacy (non-zip) files start with this pickled magic number.
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


class CheckpointError(ValueError):
    """A checkpoint could not be read or written; ``str()`` is one line naming the file."""


def detect_format(path: Path) -> str:
    """``"ganbrush"``, ``"rosinality"`` (a torch.save file) or ``"nvidia"`` (a plain pickle)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise FormatError("file is empty (0 bytes)")
    if len(head) >= 9 and head[8:9] == b"{":
        return "ganbrush"  # safetensors: u64 header length, then a JSON header
    if head.startswith(b"PK") or head.startswith(_LEGACY_TORCH_MAGIC):
        return "rosinality"
    if head[:1] == b"\x80":
        return "nvidia"
    raise FormatError("not a generator checkpoint (expected .safetensors, a torch .pt or an NVIDIA .pkl)")


def _read_ganbrush(path: Path) -> Generator:
    try:
        f = read_safetensors(path, FORMAT_NAME, what="a ganbrush generator")
    except WeightsFileError as e:
        raise FormatError(str(e)) from e
    return generator_from_state(GeneratorConfig.from_dict(f.config), f.tensors)


def _read_rosinality(path: Path) -> Generator:
    try:
        ckpt = rosinality.read(str(path))
    except pickle.UnpicklingError as e:  # UnsafePickleError: ganbrush's own one line, never torch's advice
        raise FormatError(str(e) if isinstance(e, UnsafePickleError) else "truncated or corrupt torch file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"truncated or corrupt torch file ({first})") from e
    return rosinality.to_generator(ckpt)


def _read_nvidia(path: Path) -> Generator:
    try:
        with open(path, "rb") as f:
            data = nvidia.read(f)
    except UnsafePickleError as e:
        raise FormatError(str(e)) from e
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as e:
        raise FormatError(f"truncated or corrupt pickle ({type(e).__name__}: {str(e)[:120]})") from e
    return nvidia.to_generator(data)


_READERS = {"ganbrush": _read_ganbrush, "rosinality": _read_rosinality, "nvidia": _read_nvidia}


def resolve_generator_path(path: str | os.PathLike | None) -> Path:
    """``None`` / ``"default"`` -> the shipped default generator; otherwise the given path."""
    if path is None or str(path) == "default":
        if not DEFAULT_GENERATOR.exists():
            raise CheckpointError(
                "no default generator is shipped in this version of ganbrush yet; "
                "pass a checkpoint path (.safetensors, rosinality .pt or NVIDIA .pkl)"
            )
        return DEFAULT_GENERATOR
    return Path(path).expanduser()


def load_generator(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Generator:
    """Load a generator from a ganbrush ``.safetensors``, a rosinality ``.pt`` (``g_ema``) or an
    NVIDIA stylegan2-ada-pytorch ``.pkl`` (``G_ema``), in eval mode, float32, on ``device``.
    ``None`` or ``"default"`` loads the generator shipped with ganbrush."""
    p = resolve_generator_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        G = _READERS[detect_format(p)](p)
    except FormatError as e:
        raise CheckpointError(f"{p}: {e}") from e
    return G.to(resolve_device(device))  # "auto", "cuda:1", ...: one reading of device names


def save_generator(G: Generator, path: str | os.PathLike, dtype: torch.dtype | None = None,
                   metadata: dict[str, str] | None = None) -> Path:
    """Write ``G`` as a ganbrush ``.safetensors`` file (config as JSON in the metadata).

    ``dtype=torch.float16`` halves the size. Written atomically (mode 0644): a failure never leaves
    a partial file behind.
    """
    tensors = {k: v for k, v in G.state_dict().items() if not k.endswith(DERIVED_SUFFIXES)}
    try:
        return save_safetensors(path, tensors, format=FORMAT_NAME, version=FORMAT_VERSION, config=G.cfg.to_dict(),
                                metadata=metadata, dtype=dtype)
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from e


def generator_hash(G: Generator) -> str:
    """A short fingerprint of a generator's architecture and weights (parameters and buffers as
    float32): latents saved against one generator are only meaningful for the same one."""
    h = hashlib.sha256(json.dumps(G.cfg.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
