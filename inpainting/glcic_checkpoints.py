"""Loading and saving GLCIC completion networks.

Two formats are read, recognised from the file's content:

- ganbrush ``.safetensors``: the completion network's state dict, its :class:`GlcicConfig`
  (width and the training set's mean colour) as JSON in the metadata. Written by :func:`save_glcic`.
- otenim/GLCIC-PyTorch's ``model_cn`` files: a plain state dict saved with ``torch.save``, read
  with ganbrush's restricted loader (tensors only). Its layers ``conv1`` .. ``conv17`` (``deconv13``
  and ``deconv15`` transposed) and ``bn1`` .. ``bn16`` map onto ``blocks.<n-1>.conv`` / ``.norm``.
  The file does not hold the mean colour; it comes from ``mean_color=`` or, as that repository
  writes it, the ``"mpv"`` entry of a ``config.json`` beside the file.

Every failure a user can cause is a :class:`inpainting.CheckpointError` with one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ganbrush_core.devices import resolve_device
from ganbrush_core.safe_pickle import UnsafePickleError, torch_load_tensors
from ganbrush_core.weights import WeightsFileError, is_safetensors, read_safetensors, save_safetensors
from inpainting.checkpoints import WEIGHTS_DIR, CheckpointError, _first_line, _load_state, _strip_data_parallel
from inpainting.glcic import CompletionNetwork, ContextDiscriminator, GlcicConfig, Prefill

FORMAT_NAME = "ganbrush.glcic"
FORMAT_VERSION = "1"
DISCRIMINATOR_FORMAT = "ganbrush.glcic-discriminator"
#: The shipped default completion network (model card: ``weights/glcic64.md``).
DEFAULT_GLCIC = WEIGHTS_DIR / "glcic64.safetensors"
#: The shipped refinement variant, prefill "biharmonic" (model card: ``weights/glcic64-refine.md``).
DEFAULT_GLCIC_REFINE = WEIGHTS_DIR / "glcic64-refine.safetensors"
_OFFICIAL_KEY = re.compile(r"(?:de)?conv(\d+)\.(.+)|bn(\d+)\.(.+)")


def official_to_ganbrush(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a GLCIC-PyTorch ``model_cn`` state dict's keys onto :class:`CompletionNetwork`'s."""
    out = {}
    for key, value in state.items():
        m = _OFFICIAL_KEY.fullmatch(key)
        if m is None:
            raise CheckpointError(f"not a GLCIC completion network state dict (unexpected key {key!r})")
        if m.group(1):
            out[f"blocks.{int(m.group(1)) - 1}.conv.{m.group(2)}"] = value
        else:
            out[f"blocks.{int(m.group(3)) - 1}.norm.{m.group(4)}"] = value
    return out


def _official_mean_color(path: Path) -> tuple[float, float, float]:
    config = path.parent / "config.json"
    try:
        mpv = json.loads(config.read_text())["mpv"]
        return tuple(float(v) for v in mpv)  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"a GLCIC-PyTorch file holds no mean colour: pass mean_color=(r, g, b) in [0, 1] "
                              f"or put the training run's config.json (with \"mpv\") beside it ({_first_line(e)})"
                              ) from e


def _read_official(path: Path, mean_color: tuple[float, float, float] | None) -> CompletionNetwork:
    try:
        state = torch_load_tensors(path)
    except UnsafePickleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: truncated or corrupt torch file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({_first_line(e)})") from e
    if not isinstance(state, dict) or "conv1.weight" not in _strip_data_parallel(dict(state)):
        raise CheckpointError(f"{path}: expected a GLCIC-PyTorch model_cn state dict (conv1.weight ...)")
    state = _strip_data_parallel(dict(state))
    first = state["conv1.weight"]
    if first.ndim != 4 or first.shape[1] != 4:
        raise CheckpointError(f"{path}: conv1 takes {first.shape[1]} channels; GLCIC takes image + mask (4)")
    mean = mean_color if mean_color is not None else _official_mean_color(path)
    try:
        net = CompletionNetwork(GlcicConfig(channels=first.shape[0], mean_color=mean))
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    _load_state(net, official_to_ganbrush(state))
    return net


def _read_ganbrush(path: Path) -> CompletionNetwork:
    try:
        f = read_safetensors(path, FORMAT_NAME, what="a GLCIC completion network")
        net = CompletionNetwork(GlcicConfig(**f.config))
    except (WeightsFileError, TypeError, ValueError) as e:
        raise CheckpointError(str(e)) from e
    _load_state(net, f.tensors)
    return net


def default_glcic(prefill: Prefill | str = Prefill.MEAN) -> Path:
    """Where the shipped completion network with this prefill lives (it may be missing)."""
    return DEFAULT_GLCIC_REFINE if Prefill(prefill) is Prefill.BIHARMONIC else DEFAULT_GLCIC


def has_default_glcic(prefill: Prefill | str = Prefill.MEAN) -> bool:
    """Whether this installation has the shipped completion network with this prefill."""
    return default_glcic(prefill).is_file()


def load_glcic(path: str | os.PathLike | None = None, mean_color: tuple[float, float, float] | None = None,
               device: str | torch.device = "cpu", prefill: Prefill | str = Prefill.MEAN) -> CompletionNetwork:
    """A completion network from a ganbrush ``.safetensors`` or a GLCIC-PyTorch ``model_cn``
    state dict (``None``: the shipped one with ``prefill``, the paper's GLCIC by default),
    float32, eval mode, on ``device``. ``mean_color`` (RGB in [0, 1]) overrides the file's
    (required for an official file without its ``config.json`` beside it)."""
    if path is None:
        path = default_glcic(prefill)
        if not path.is_file():
            raise CheckpointError(f"the default GLCIC model ({Prefill(prefill).value} prefill) is missing from this "
                                  f"installation ({path}); reinstall ganbrush or pass a completion network with "
                                  "--glcic-weights FILE")
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        if is_safetensors(p):
            net = _read_ganbrush(p)
            if mean_color is not None:
                net.cfg = dataclasses.replace(net.cfg, mean_color=tuple(mean_color))
        else:
            net = _read_official(p, mean_color)
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(str(p)) else f"{p}: {message}") from e
    return net.eval().to(resolve_device(device))


def save_glcic(net: CompletionNetwork, path: str | os.PathLike, *, force: bool = False,
               dtype: torch.dtype | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write a completion network as a ganbrush ``.safetensors`` (config as JSON metadata),
    atomically; an existing file is kept unless ``force``."""
    try:
        return save_safetensors(path, net.state_dict(), format=FORMAT_NAME, version=FORMAT_VERSION,
                                config=net.cfg.to_dict(), metadata=metadata, dtype=dtype, force=force)
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from e


def save_discriminator(D: ContextDiscriminator, path: str | os.PathLike, *, force: bool = False,
                       dtype: torch.dtype | None = torch.float16) -> Path:
    """Write a context discriminator (float16 by default: it is kept to continue training, not
    for inference) as a ganbrush ``.safetensors`` with its sizes in the metadata."""
    config = {"image_size": D.global_branch.size, "local_size": D.local_size,
              "channels": D.global_branch.convs[0].conv.out_channels, "features": D.fc.in_features // 2}
    try:
        return save_safetensors(path, D.state_dict(), format=DISCRIMINATOR_FORMAT, version=FORMAT_VERSION,
                                config=config, dtype=dtype, force=force)
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from e


def load_discriminator(path: str | os.PathLike) -> ContextDiscriminator:
    """A context discriminator written by :func:`save_discriminator`, float32, train mode."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        f = read_safetensors(p, DISCRIMINATOR_FORMAT, what="a GLCIC context discriminator")
        D = ContextDiscriminator(**f.config)
        _load_state(D, f.tensors)
    except (WeightsFileError, TypeError, ValueError, CheckpointError) as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(str(p)) else f"{p}: {message}") from e
    return D.train()
