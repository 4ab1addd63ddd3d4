"""Compiled CUDA ops (``impl="cuda"``) against the pure-PyTorch reference on the same GPU.

Runs exactly the tests of ``test_ops_cpp.py`` (imported below) with a ``target`` fixture that
points them at the CUDA extension. Skipped where no CUDA device is available.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from stylegan_ops.ops import build

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device available")


def _load_cases():
    # Loaded by path under a private name so this works whether or not tests/ is a package,
    # and so the tolerance tweak below does not leak into the CPU test module.
    path = Path(__file__).with_name("test_ops_cpp.py")
    spec = importlib.util.spec_from_file_location("_stylegan_ops_cases_for_cuda", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_cases = _load_cases()
# The CUDA build uses --use_fast_math (approximate single-precision exp / tanh / division);
# double precision is unaffected and keeps the tight tolerance.
_cases.TOL[torch.float32] = 5e-5

# Re-export every test; pytest collects them here and resolves `target` from this module.
for _name in dir(_cases):
    if _name.startswith("test_"):
        globals()[_name] = getattr(_cases, _name)


@pytest.fixture(scope="module")
def target():
    reason = build.missing_prerequisite("cuda")
    if reason:
        pytest.skip(f"cannot build the cuda ops here: {reason}")
    build.load("cuda")  # a build failure is a test failure, not a skip
    return _cases.Target("cuda", "cuda")


@pytest.fixture(autouse=True)
def _exact_reference():
    # cuDNN may run the float32 reference convolutions in TF32 (10-bit mantissa) by default.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
