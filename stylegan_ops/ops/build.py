"""Lazy, cached, lock-safe builds of the compiled ops (C++ CPU and CUDA extensions).

Nothing is compiled at import. The first call that needs a compiled op builds it with
``torch.utils.cpp_extension`` and ninja into ``$GANBRUSH_HOME/ops/<kind>-<key>`` where the key
hashes the sources, torch version, compiler and CPU, so a changed source or toolchain gets a
fresh build and an unchanged one is reused.

Self-check: the first time a build is loaded on a machine (per build and device), every op it
exposes is run against ``ref`` (:mod:`.selftest`) and the verdict is stored next to the build
as ``selftest-<device>.json``; later loads read that verdict instead of re-running the check. A
build whose check failed is treated like one that did not build: ``impl=None`` warns once and
uses ``ref``, an explicit ``impl="cpp"``/``"cuda"`` raises. ``ganbrush ops selftest`` re-runs it.

Locking: torch guards a build directory with a plain ``lock`` file that a killed build leaves
behind, after which every later build waits forever. We hold an OS-level lock (``flock`` via
``filelock``, released by the kernel when its holder dies) around the whole build, so any torch
``lock`` file found while we hold it is stale and is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ganbrush_core.io import write_text
from ganbrush_core.paths import ganbrush_home

CSRC = Path(__file__).parent / "csrc"
KINDS = ("cpp", "cuda")
SOURCES = {
    "cpp": ["ops_cpu.cpp"],
    "cuda": ["ops_cuda.cpp", "bias_act_cuda.cu", "upfirdn2d_cuda.cu"],
}
HEADERS = ["ops_math.h", "ops_checks.h", "cuda_utils.cuh"]
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]
LDFLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "--use_fast_math"]
LOCK_TIMEOUT_S = 600.0
STRICT_ENV = "GANBRUSH_OPS_STRICT"


class OpsBuildError(RuntimeError):
    """A compiled op could not be built or loaded; the message says why and what to do."""


class OpsSelfTestError(OpsBuildError):
    """A compiled op was built but disagrees with ``ref`` (or fails to launch) on this machine."""


@dataclass
class _State:
    compiled: dict[str, types.ModuleType]  # built and imported, not necessarily verified
    modules: dict[str, types.ModuleType]  # verified: what the ops run
    failures: dict[str, str]  # builds that failed
    rejected: dict[str, str]  # builds whose self-check failed
    warned: set[str]
    verifying: set[str]  # kinds whose self-check is running (in the thread holding the lock)


_state = _State(compiled={}, modules={}, failures={}, rejected={}, warned=set(), verifying=set())
# Re-entrant: the self-check runs the ops, which load the module, while load() holds the lock;
# other threads wait until the verdict is in.
_thread_lock = threading.RLock()


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def _put_ninja_on_path() -> None:
    # The pip `ninja` package's binary is not on PATH when .venv/bin/python is called directly.
    try:
        import ninja
    except ImportError:
        return
    bin_dir = str(ninja.BIN_DIR)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _cpp_extension() -> types.ModuleType:
    """``torch.utils.cpp_extension`` with ninja on PATH, imported only when a build is near.
    Its import-time notice about a missing CUDA runtime is noise on CPU-only machines."""
    _put_ninja_on_path()
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def _cpu_signature() -> str:
    # -march=native output only runs on the same CPU features: key the cache on them.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def missing_prerequisite(kind: str) -> str | None:
    """Why ``kind`` cannot be built on this machine, or None if it can be tried."""
    if kind not in KINDS:
        raise ValueError(f"unknown compiled op kind {kind!r}; expected one of {KINDS}")
    if kind == "cuda":
        if torch.version.cuda is None:
            return "this torch build has no CUDA support"
        if not torch.cuda.is_available():
            return "no CUDA device available"
    missing = [n for n in SOURCES[kind] + HEADERS if not (CSRC / n).is_file()]
    if missing:
        return f"op sources missing from the installation: {missing} (reinstall ganbrush)"
    cpp_extension = _cpp_extension()
    if shutil.which(_compiler()) is None:
        return f"no C++ compiler ({_compiler()!r} not found; install g++ or set CXX)"
    if not cpp_extension.is_ninja_available():
        return "ninja not found (pip install ninja)"
    if kind == "cuda" and cpp_extension.CUDA_HOME is None:
        return "CUDA toolkit (nvcc) not found; set CUDA_HOME"
    return None


def build_key(kind: str) -> str:
    """Hash of everything that makes a build reusable."""
    h = hashlib.sha256()
    for name in SOURCES[kind] + HEADERS:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    parts = [
        torch.__version__, str(torch.version.cuda), sys.version, platform.machine(),
        _first_line([_compiler(), "--version"]), " ".join(CFLAGS + LDFLAGS + NVCC_FLAGS), _cpu_signature(),
    ]
    h.update("\0".join(parts).encode())
    return h.hexdigest()[:16]


def build_dir(kind: str) -> Path:
    return ganbrush_home() / "ops" / f"{kind}-{build_key(kind)}"


def _compile(kind: str, directory: Path) -> types.ModuleType:
    cpp_extension = _cpp_extension()
    name = f"ganbrush_ops_{kind}_{directory.name.split('-')[-1]}"
    return cpp_extension.load(
        name=name,
        sources=[str(CSRC / s) for s in SOURCES[kind]],
        extra_include_paths=[str(CSRC)],
        # Copies: torch appends to these lists, which would change build_key() mid-process.
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        extra_cuda_cflags=list(NVCC_FLAGS) if kind == "cuda" else None,
        build_directory=str(directory),
        verbose=False,
    )


def _build(kind: str) -> types.ModuleType:
    from filelock import FileLock, Timeout

    reason = missing_prerequisite(kind)
    if reason:
        raise OpsBuildError(reason)
    directory = build_dir(kind)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f"{directory.name}.lock"
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            # We hold the OS lock, so nobody else is building here: torch's baton is stale.
            (directory / "lock").unlink(missing_ok=True)
            return _compile(kind, directory)
    except Timeout as e:
        raise OpsBuildError(
            f"another process has been building {directory} for over {LOCK_TIMEOUT_S:.0f} s; "
            "wait for it or stop it"
        ) from e
    except OpsBuildError:
        raise
    except Exception as e:  # compiler errors surface as RuntimeError/OSError/ImportError
        detail = str(e).strip().splitlines()
        raise OpsBuildError(f"build failed in {directory}: {detail[-1] if detail else type(e).__name__}") from e


def compiled(kind: str) -> types.ModuleType:
    """The compiled ``kind`` module, built on first use but not self-checked (use :func:`load`);
    raises :class:`OpsBuildError`. A failed build is remembered, not retried in this process."""
    with _thread_lock:
        if kind in _state.compiled:
            return _state.compiled[kind]
        if kind in _state.failures:
            raise OpsBuildError(_state.failures[kind])
        try:
            module = _build(kind)
        except OpsBuildError as e:
            _state.failures[kind] = str(e)
            raise
        _state.compiled[kind] = module
        return module


def _device_signature(kind: str) -> str:
    """What a verdict is valid for besides the build: the GPU it ran on (the build key already
    covers the CPU, compiler and torch)."""
    if kind != "cuda":
        return "cpu"
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return f"{props.name} sm_{props.major}{props.minor} CUDA {torch.version.cuda}"


def verdict_path(kind: str) -> Path:
    """Where the self-check verdict of the current ``kind`` build on this device is stored."""
    device = _device_signature(kind)
    if device != "cpu":
        device = hashlib.sha256(device.encode()).hexdigest()[:12]
    return build_dir(kind) / f"selftest-{device}.json"


def _read_verdict(path: Path):
    from stylegan_ops.ops.selftest import Verdict

    try:
        return Verdict.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version: check again


def verify(kind: str, rerun: bool = False):
    """Self-check the ``kind`` build on this machine, or read the stored verdict unless
    ``rerun``; records a new verdict and updates what :func:`load` returns. Returns the
    :class:`~stylegan_ops.ops.selftest.Verdict`; raises :class:`OpsBuildError` when the build
    itself fails."""
    from stylegan_ops.ops import selftest

    with _thread_lock:
        module = compiled(kind)
        path = verdict_path(kind)
        verdict = None if rerun else _read_verdict(path)
        if verdict is None:
            verdict = selftest.run(kind)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, json.dumps(verdict.to_json(), indent=1) + "\n")
            except OSError:
                pass  # a read-only cache: the verdict still holds for this process

        if verdict.passed:
            _state.modules[kind] = module
            _state.rejected.pop(kind, None)
        else:
            _state.modules.pop(kind, None)
            _state.rejected[kind] = (
                f"self-check against 'ref' failed on this machine: {verdict.reason()} (verdict in "
                f"{path}; `ganbrush ops selftest --impl {kind}` re-runs it)"
            )
        return verdict


@contextlib.contextmanager
def unverified(kind: str) -> Iterator[types.ModuleType]:
    """Within this block, this thread's ops may run the ``kind`` build before its self-check
    has passed (for the self-check itself); other threads wait. Raises :class:`OpsBuildError`
    when it does not build."""
    with _thread_lock:
        module = compiled(kind)
        nested = kind in _state.verifying
        _state.verifying.add(kind)
        try:
            yield module
        finally:
            if not nested:
                _state.verifying.discard(kind)


def module_for_kernels(kind: str) -> types.ModuleType:
    """The module the ops' kernels call once :func:`stylegan_ops.ops.impl.choose` picked ``kind``
    (which waited for the verdict). Lock-free when built: autograd runs CUDA backward passes on
    its own thread, which must not wait for the lock held by the thread running the self-check."""
    module = _state.compiled.get(kind)
    return module if module is not None else load(kind)


def load(kind: str) -> types.ModuleType:
    """The compiled ``kind`` module, built and self-checked on first use; raises
    :class:`OpsBuildError` (:class:`OpsSelfTestError` when it disagrees with ``ref``)."""
    with _thread_lock:
        if kind in _state.modules:
            return _state.modules[kind]
        if kind in _state.verifying:
            return _state.compiled[kind]  # the self-check's own calls
        if kind in _state.rejected:
            raise OpsSelfTestError(_state.rejected[kind])
        verify(kind)  # builds first; a build failure raises from here
        if kind not in _state.modules:
            raise OpsSelfTestError(_state.rejected[kind])
        return _state.modules[kind]


def try_load(kind: str) -> types.ModuleType | None:
    """Like :func:`load` but warns once and returns None when the build is impossible or failed
    its self-check, unless ``GANBRUSH_OPS_STRICT=1``, which turns the failure into an error."""
    try:
        return load(kind)
    except OpsBuildError as e:
        if strict():
            raise OpsBuildError(f"compiled '{kind}' ops unavailable ({e}) and {STRICT_ENV}=1") from e
        if kind not in _state.warned:
            _state.warned.add(kind)
            warnings.warn(
                f"ganbrush: compiled '{kind}' ops unavailable ({e}); falling back to the slower "
                "pure-PyTorch 'ref' ops. `ganbrush ops info` shows details.",
                RuntimeWarning,
                stacklevel=3,
            )
        return None


def reset() -> None:
    """Forget loaded modules, verdicts and remembered failures (tests use it to simulate a fresh
    process)."""
    with _thread_lock:
        _state.compiled.clear()
        _state.modules.clear()
        _state.failures.clear()
        _state.rejected.clear()
        _state.warned.clear()
