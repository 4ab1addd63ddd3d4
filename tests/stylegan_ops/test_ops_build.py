"""Lazy builds of the compiled ops: fallback to ``ref``, strict mode, stale locks."""

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from stylegan_ops.ops import OpsBuildError, bias_act, build, upfirdn2d


@pytest.fixture
def fresh_build_state(monkeypatch, tmp_path):
    """A fresh process's view of the builds, with an empty cache directory."""
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(build.STRICT_ENV, raising=False)
    build.reset()
    yield tmp_path
    build.reset()


def test_importing_builds_nothing(tmp_path):
    code = "import stylegan_ops, stylegan_ops.ops, stylegan_ops.networks; print('ok')"
    env = {"GANBRUSH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    assert not (tmp_path / "ops").exists()


def test_missing_compiler_warns_once_and_falls_back_to_ref(fresh_build_state, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*falling back"):
        y = bias_act(x, torch.ones(3), act="lrelu")
    torch.testing.assert_close(y, bias_act(x, torch.ones(3), act="lrelu", impl="ref"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second use must not warn again
        out = upfirdn2d(x, torch.ones(2, 2))
    torch.testing.assert_close(out, upfirdn2d(x, torch.ones(2, 2), impl="ref"))
    with pytest.raises(OpsBuildError, match="no C\\+\\+ compiler"):
        bias_act(x, impl="cpp")  # asked for explicitly: an error, not a silent fallback


def test_strict_mode_turns_the_fallback_into_an_error(fresh_build_state, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv(build.STRICT_ENV, "1")
    with pytest.raises(OpsBuildError, match="GANBRUSH_OPS_STRICT"):
        bias_act(torch.randn(2, 3))


def test_compile_failure_is_reported_with_its_reason(fresh_build_state, monkeypatch):
    def broken(kind, directory):
        raise RuntimeError("Error building extension 'x'\nops_cpu.cpp:1: error: simulated failure")

    monkeypatch.setattr(build, "_compile", broken)
    with pytest.warns(RuntimeWarning, match="simulated failure"):
        y = bias_act(torch.randn(4, 3), torch.zeros(3), act="relu")
    assert (y >= 0).all()
    with pytest.raises(OpsBuildError, match="build failed.*simulated failure"):
        build.load("cpp")  # the failure is remembered, not retried on every call


def test_cuda_without_a_gpu_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert "CUDA" in build.missing_prerequisite("cuda")
    with pytest.raises(ValueError, match="cannot run on a cpu tensor"):
        bias_act(torch.randn(2), impl="cuda")


@pytest.mark.skipif(build.missing_prerequisite("cpp") is not None, reason="no C++ toolchain")
def test_build_after_a_killed_build_does_not_hang(tmp_path):
    """A build killed while holding the locks (ours and torch's baton) must not block the next."""
    directory = build.build_dir("cpp")
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f"{directory.name}.lock"
    killer = textwrap.dedent(f"""
        import os, signal
        from filelock import FileLock
        FileLock({str(lock_path)!r}).acquire()
        open({str(directory / "lock")!r}, "w").close()  # torch's build baton, left behind
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", killer], timeout=60)
    assert (directory / "lock").exists()
    code = "from stylegan_ops.ops import build; m = build.load('cpp'); print('built', m.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0 and "built" in out.stdout, out.stderr[-2000:]
