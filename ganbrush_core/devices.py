"""Where models run: one reading of device names for every command, the app and the APIs.

Names: ``"auto"`` (CUDA when a GPU is visible, else the CPU), ``"cpu"``, ``"cuda"`` (the current
GPU) and ``"cuda:N"``. Commands take ``--device`` (:func:`add_device_argument`; its default is
``$GANBRUSH_DEVICE``, else ``auto``); APIs take ``device=`` (a name or a :class:`torch.device`).

What runs where: the models (generators, LPIPS, EdgeConnect, classifiers), latents and noise maps
on the chosen device; dlib (faces, landmarks, identity) and OpenCV / scikit-image (alignment,
Canny, classical inpainting, edit transfer) on the CPU. Results come back on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
from typing import TypeVar

import torch
from torch import nn

#: Environment variable that sets the default of ``--device`` (commands and the app).
DEVICE_ENV = "GANBRUSH_DEVICE"
AUTO = "auto"
_NAMES = "auto, cpu, cuda or cuda:N"

M = TypeVar("M", bound=nn.Module)


class DeviceError(ValueError):
    """A device that cannot be used here: ``cuda`` without a GPU, ``cuda:N`` past the last GPU,
    a name that is not a device."""


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return f"no CUDA GPU is visible (torch {torch.__version__} found no NVIDIA driver or device)"


def resolve_device(device: str | torch.device | None = AUTO) -> torch.device:
    """The :class:`torch.device` that ``device`` names (``None`` = ``"auto"``); CUDA devices come
    back with their index (``cuda`` -> ``cuda:0``), so two names of one GPU compare equal.

    Raises :class:`DeviceError` (one line saying what to use instead) for a CUDA device on a
    machine without one, an index past the last GPU, or anything but auto / cpu / cuda[:N]."""
    name = AUTO if device is None else device
    if isinstance(name, str):
        name = name.strip().lower()
        if name == AUTO:
            return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
                else torch.device("cpu")
        try:
            spec = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"unknown device {device!r}; use {_NAMES}") from None
    elif isinstance(name, torch.device):
        spec = name
    else:
        raise DeviceError(f"a device is a name ({_NAMES}) or a torch.device, got {type(device).__name__}")
    if spec.type == "cpu":
        return torch.device("cpu")
    if spec.type != "cuda":
        raise DeviceError(f"device {str(spec)!r} is not supported; use {_NAMES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {str(spec)!r} was asked for, but {_no_cuda_reason()}; use cpu "
                          f"(or auto: CUDA when available, else the CPU)")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if spec.index is None else spec.index
    if index >= count:
        raise DeviceError(f"device {str(spec)!r} does not exist: this machine has {count} CUDA device(s), "
                          f"cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def default_device_name() -> str:
    """The default of ``--device``: ``$GANBRUSH_DEVICE`` if set, else ``"auto"``."""
    return os.environ.get(DEVICE_ENV, "").strip() or AUTO


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` to a command. The value stays a name until the command runs
    (``ganbrush_cli.main`` resolves it first, so a missing GPU is one line and exit status 2)."""
    parser.add_argument("--device", default=default_device_name(), metavar="DEVICE",
                        help=f"where the models run: {_NAMES} (default: ${DEVICE_ENV}, else auto = CUDA when "
                             "available, else the CPU); dlib and OpenCV always run on the CPU")


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU for a module with neither."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def on_device(module: M, device: str | torch.device | None) -> M:
    """``module`` on ``device`` (``None``: where it already is). ``module`` itself when it is
    there, else a moved copy: a caller's model never changes device under it (the app shares one
    generator between concurrent requests)."""
    if device is None:
        return module
    target = resolve_device(device)
    if module_device(module) == target:
        return module
    return copy.deepcopy(module).to(target)
