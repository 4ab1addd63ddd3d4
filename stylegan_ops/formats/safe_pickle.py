"""A restricted unpickler for NVIDIA stylegan2-ada-pytorch network pickles.

Those pickles embed the Python source of every network class (``torch_utils.persistence``)
and a plain ``pickle.load`` would import and run it. This unpickler never executes anything
from the file: it rebuilds tensors, numpy scalars/arrays and plain containers, turns each
persistent network object into an inert :class:`PersistentObject` record (class name, init
arguments, parameters, buffers, children), and refuses every other global with
:class:`UnsafePickleError`.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than tensors and plain data."""


@dataclass
class PersistentObject:
    """Inert stand-in for a ``torch_utils.persistence`` object: its data, never its code."""

    class_name: str
    module_name: str
    state: dict = field(repr=False)

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or self.state.get("init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or self.state.get("init_args") or ())

    def children(self) -> dict[str, PersistentObject]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, PersistentObject)}

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this object and its children, keyed like ``nn.Module``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, torch.Tensor):
                    out[prefix + name] = t.detach()
        for name, child in self.children().items():
            out.update(child.state_dict(prefix + name + "."))
        return out


class _EasyDict(dict):
    """``dnnlib.EasyDict`` is a dict with attribute access; keep only the dict."""


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("unexpected persistent object record (not a network class)")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UnsafePickleError("persistent object state is not a dict")
    # meta["module_src"] holds Python source: deliberately ignored, never compiled or run.
    return PersistentObject(str(meta.get("class_name")), str(meta.get("module_name", "")), state)


def _load_storage_bytes(b: bytes):
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError("tensor storage payload is not bytes")
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    if isinstance(storage, torch.storage.TypedStorage):
        t = torch.empty(0, dtype=storage.dtype)
        storage = storage._untyped_storage
    else:
        raise UnsafePickleError(f"tensor storage of unexpected type {type(storage).__name__}")
    t.set_(storage, storage_offset, tuple(size), tuple(stride))
    return t


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_from_type_v2(func, new_type, args, state):
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError(f"refusing tensor subclass {new_type!r}")
    return func(*args)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _np_dtype(name, align=False, copy=False):
    dt = np.dtype(name, align=align, copy=copy)
    if dt.hasobject:
        raise UnsafePickleError("numpy object dtype")
    return dt


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")

ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): _np_dtype,
    **{(m, "scalar"): _np_scalar for m in _NUMPY_MODULES},
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load '{module}.{name}': only tensors, numpy scalars and plain "
                "containers are allowed (the file may contain code)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("unexpected persistent id in pickle")


def safe_load(f: BinaryIO) -> Any:
    """Unpickle ``f`` allowing only tensors, numpy scalars and plain data."""
    return RestrictedUnpickler(f).load()
