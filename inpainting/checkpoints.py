"""Loading and saving EdgeConnect generators.

Two formats are read, recognised from the file's content:

- ganbrush ``.safetensors``: one generator per file, its :class:`GeneratorConfig` as JSON in the
  metadata. Written by :func:`save_generator` / :func:`save_edgeconnect`.
- the official knazeri/edge-connect ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth``:
  ``{'generator': state_dict, 'iteration': n}`` read with ``torch.load(weights_only=True)``.
  Spectral-norm layers store ``weight_orig`` / ``weight_u`` / ``weight_v``; they are mapped onto
  the spectral-norm parametrization with the stored ``u`` and ``v`` (in eval mode sigma is
  ``u . W v`` from those, no power iteration), so outputs match the official network. A
  ``module.`` prefix (``nn.DataParallel``) is removed.

Every failure a user can cause is a :class:`CheckpointError` with a one-line message naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ganbrush_core.devices import resolve_device
from ganbrush_core.io import refuse_overwrite
from ganbrush_core.safe_pickle import UnsafePickleError, torch_load_tensors
from ganbrush_core.weights import WeightsFileError, read_safetensors, save_safetensors
from inpainting.networks import EdgeConnectGenerator, GeneratorConfig, GeneratorKind, build_generator

FORMAT_NAME = "ganbrush.edgeconnect"
FORMAT_VERSION = "1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_EDGE = WEIGHTS_DIR / "edgeconnect_edge.safetensors"
DEFAULT_INPAINT = WEIGHTS_DIR / "edgeconnect_inpaint.safetensors"
# torch.save's legacy (non-zip) files start with this pickled magic number.
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
_DATA_PARALLEL_PREFIX = "module."
# Official spectral-norm entries and their names under torch.nn.utils.parametrizations.
_SN_RENAMES = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
}
# Indices of the convolutions in the official Sequential layout (shared by networks.py).
_FIRST_CONV = "encoder.1"
_LAST_CONV = "decoder.7"


class CheckpointError(ValueError):
    """An EdgeConnect checkpoint could not be read or written; ``str()`` is one line naming the file."""


class EdgeConnect(nn.Module):
    """The two EdgeConnect generators: ``edge_generator`` (G1) and ``inpaint_generator`` (G2).

    Each takes exactly the official network's input (see ``networks.edge_inputs`` /
    ``networks.inpaint_inputs``); :func:`inpainting.inpaint` wraps them in the [-1, 1] API.
    """

    def __init__(self, edge_generator: EdgeConnectGenerator, inpaint_generator: EdgeConnectGenerator):
        super().__init__()
        if edge_generator.kind is not GeneratorKind.EDGE or inpaint_generator.kind is not GeneratorKind.INPAINT:
            raise CheckpointError("EdgeConnect needs an edge generator then an inpainting generator (swapped?)")
        self.edge_generator = edge_generator
        self.inpaint_generator = inpaint_generator


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _strip_data_parallel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(_DATA_PARALLEL_PREFIX) for k in state):
        return {k[len(_DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def _weight(state: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    for name in ("weight", "weight_orig"):
        if f"{layer}.{name}" in state:
            return state[f"{layer}.{name}"]
    raise CheckpointError(f"not an EdgeConnect generator state dict (no {layer}.weight)")


def config_from_official(state: dict[str, torch.Tensor]) -> GeneratorConfig:
    """Infer the generator's architecture from an official state dict (``module.`` already removed)."""
    first, last = _weight(state, _FIRST_CONV), _weight(state, _LAST_CONV)
    kinds = {k.in_channels: k for k in GeneratorKind}
    kind = kinds.get(first.shape[1])
    if kind is None or last.shape[0] != kind.out_channels:
        raise CheckpointError(
            f"not an EdgeConnect generator: {first.shape[1]} input and {last.shape[0]} output channels "
            "(expected 3 -> 1 for the edge model, 4 -> 3 for the inpainting model)"
        )
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"middle\.(\d+)\.", k))}
    return GeneratorConfig(kind, channels=first.shape[0], residual_blocks=len(blocks),
                           spectral_norm=f"{_FIRST_CONV}.weight_orig" in state)


def official_to_ganbrush(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict's spectral-norm entries onto the parametrization's names."""
    out = {}
    for key, value in state.items():
        layer, _, name = key.rpartition(".")
        if name == "weight_orig" and f"{layer}.weight_v" not in state:
            # torch < 1.0 files lack v; torch itself would re-derive it. Refuse rather than guess.
            raise CheckpointError(f"spectral-norm layer {layer} has no weight_v (a PyTorch < 1.0 file?)")
        if name == "weight" and f"{layer}.weight_orig" in state:
            continue  # legacy copy of the normalised weight next to weight_orig: derived, not needed
        out[f"{layer}.{_SN_RENAMES[name]}" if name in _SN_RENAMES else key] = value
    return out


def _load_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"state dict does not match the architecture (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{key}: shape {list(value.shape)}, expected {list(expected[key].shape)}")
    net.load_state_dict({k: v.float() for k, v in state.items()})


def _detect_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: file is empty")
    if len(head) >= 9 and head[8:9] == b"{":
        return "ganbrush"  # safetensors: u64 header length, then a JSON header
    if head.startswith(b"PK") or head.startswith(_LEGACY_TORCH_MAGIC):
        return "official"
    raise CheckpointError(f"{path}: not an EdgeConnect checkpoint (expected a ganbrush .safetensors or an "
                          "official .pth)")


def _read_ganbrush(path: Path) -> EdgeConnectGenerator:
    try:
        f = read_safetensors(path, FORMAT_NAME, what="an EdgeConnect generator")
    except WeightsFileError as e:
        raise CheckpointError(f"{path}: {e}") from e
    net = build_generator(GeneratorConfig.from_dict(f.config))
    _load_state(net, f.tensors)
    return net


def _read_official(path: Path) -> EdgeConnectGenerator:
    try:
        data = torch_load_tensors(path)
    except UnsafePickleError as e:  # ganbrush's own one line, never torch's advice
        raise CheckpointError(f"{path}: {e}") from None
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: truncated or corrupt torch file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({_first_line(e)})") from e
    if not isinstance(data, dict) or not isinstance(data.get("generator"), dict):
        raise CheckpointError(f"{path}: expected an official EdgeConnect file {{'generator': state_dict}}")
    state = _strip_data_parallel(dict(data["generator"]))
    net = build_generator(config_from_official(state))
    _load_state(net, official_to_ganbrush(state))
    return net


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> EdgeConnectGenerator:
    """One EdgeConnect generator from a ganbrush ``.safetensors`` or an official ``.pth``, float32,
    eval mode, on ``device``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        net = _read_ganbrush(p) if _detect_format(p) == "ganbrush" else _read_official(p)
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(str(p)) else f"{p}: {message}") from e
    return net.eval().to(resolve_device(device))


def default_weights() -> tuple[Path, Path]:
    """The shipped default (edge, inpaint) files (model card: ``weights/edgeconnect.md``), or a
    :class:`CheckpointError` when an installation lacks them."""
    missing = [p for p in (DEFAULT_EDGE, DEFAULT_INPAINT) if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"the default EdgeConnect model is missing from this installation ({missing[0]}); reinstall ganbrush "
            "or pass weights with --weights EDGE INPAINT (ganbrush .safetensors or the official "
            "EdgeModel_gen.pth InpaintingModel_gen.pth)"
        )
    return DEFAULT_EDGE, DEFAULT_INPAINT


def load_edgeconnect(edge_ckpt: str | os.PathLike | None = None, inpaint_ckpt: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> EdgeConnect:
    """Both generators from two files (each a ganbrush ``.safetensors`` or an official ``.pth``).
    Without paths, the default model shipped with ganbrush (an error while none is shipped)."""
    if edge_ckpt is None and inpaint_ckpt is None:
        edge_ckpt, inpaint_ckpt = default_weights()
    elif edge_ckpt is None or inpaint_ckpt is None:
        raise CheckpointError("pass both the edge and the inpainting checkpoint, or neither for the default model")
    edge, inpaint = load_generator(edge_ckpt, device), load_generator(inpaint_ckpt, device)
    if edge.kind is not GeneratorKind.EDGE or inpaint.kind is not GeneratorKind.INPAINT:
        raise CheckpointError(f"{edge_ckpt} holds the {edge.kind.value} generator and {inpaint_ckpt} the "
                              f"{inpaint.kind.value} one; pass the edge model first, then the inpainting model")
    return EdgeConnect(edge, inpaint).eval()


def save_generator(net: EdgeConnectGenerator, path: str | os.PathLike, *, force: bool = False,
                   dtype: torch.dtype | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write one generator as a ganbrush ``.safetensors`` (config as JSON metadata), atomically
    with mode 0644; an existing file is kept unless ``force``."""
    try:
        return save_safetensors(path, net.state_dict(), format=FORMAT_NAME, version=FORMAT_VERSION,
                                config=net.cfg.to_dict(), metadata=metadata, dtype=dtype, force=force)
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from e


def save_edgeconnect(model: EdgeConnect, edge_path: str | os.PathLike, inpaint_path: str | os.PathLike, *,
                     force: bool = False, dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Write both generators (see :func:`save_generator`); nothing is written if either file exists
    and ``force`` is not set."""
    refuse_overwrite([edge_path, inpaint_path], force)
    return (save_generator(model.edge_generator, edge_path, force=force, dtype=dtype),
            save_generator(model.inpaint_generator, inpaint_path, force=force, dtype=dtype))
