"""Choosing an op implementation: ``ref`` (pure PyTorch), ``cpp`` (CPU extension), ``cuda``."""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from stylegan_ops.ops import build

IMPLS = ("ref", "cpp", "cuda")
_COMPILED_FOR_DEVICE = {"cpu": "cpp", "cuda": "cuda"}
# What ``impl=None`` means inside :func:`preferred` (None outside it: the fastest available).
_PREFERRED: ContextVar[str | None] = ContextVar("stylegan_ops_preferred_impl", default=None)


@contextmanager
def preferred(impl: str | None) -> Iterator[None]:
    """Within the block, ops called with ``impl=None`` (as the networks call them) run ``impl``
    on devices it can run on (``"ref"`` on any). For benchmarks and debugging: a whole network's
    forward and backward pass on the reference ops, without a switch in every module."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {IMPLS} or None for automatic")
    token = _PREFERRED.set(impl)
    try:
        yield
    finally:
        _PREFERRED.reset(token)


def choose(impl: str | None, device: torch.device) -> str:
    """The implementation to run on ``device``.

    None picks the one :func:`preferred` names, if any and it runs on ``device``; else the
    compiled one for the device when it builds, else ``ref`` (with one warning; an error under
    ``GANBRUSH_OPS_STRICT=1``). An explicit compiled choice that cannot be built
    raises :class:`~stylegan_ops.ops.build.OpsBuildError`.
    """
    if impl is None and _PREFERRED.get() is not None:
        wanted = _PREFERRED.get()
        if wanted == "ref" or _COMPILED_FOR_DEVICE.get(device.type) == wanted:
            impl = wanted
    if impl is None:
        kind = _COMPILED_FOR_DEVICE.get(device.type)
        if kind is None or build.try_load(kind) is None:
            return "ref"
        return kind
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {IMPLS} or None for automatic")
    if impl != "ref":
        if _COMPILED_FOR_DEVICE.get(device.type) != impl:
            raise ValueError(f"impl={impl!r} cannot run on a {device.type} tensor")
        build.load(impl)
    return impl


def extension(kind: str) -> types.ModuleType:
    """The compiled module for ``kind`` (built on first use), for kernels that :func:`choose` picked."""
    return build.module_for_kernels(kind)
