"""The first-use self-check of the compiled ops: verdicts, the fallback to ``ref`` on a wrong
kernel or a failed launch, verdicts reused across processes, ``ganbrush ops selftest``."""

import json
import threading
import warnings

import pytest
import torch

import ganbrush_cli
from stylegan_ops.ops import ACTIVATIONS, bias_act, build, selftest, upfirdn2d
from stylegan_ops.ops import impl as ops_impl
from stylegan_ops.ops.bias_act import KernelMode

pytestmark = pytest.mark.skipif(build.missing_prerequisite("cpp") is not None, reason="no C++ toolchain")


@pytest.fixture
def verdicts(monkeypatch, tmp_path):
    """A fresh process's view of the builds (the cpp build itself is reused from the cache),
    with verdicts kept in tmp_path instead of beside the shared build."""
    monkeypatch.delenv(build.STRICT_ENV, raising=False)
    monkeypatch.setattr(build, "verdict_path", lambda kind: tmp_path / f"selftest-{kind}.json")
    build.reset()
    yield tmp_path
    build.reset()


def patch_kernel(monkeypatch, name, wrap):
    """Replace the compiled module's ``name`` by ``wrap(original, *args)``."""
    module = build.compiled("cpp")
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: wrap(original, *args))


def stored(verdicts, kind="cpp") -> dict:
    return json.loads((verdicts / f"selftest-{kind}.json").read_text())


def test_cases_cover_every_op_and_activation():
    gen = torch.Generator().manual_seed(0)
    bias_cases = list(selftest._bias_act_cases("cpp", gen))
    assert {c.kw["act"] for c in bias_cases} == set(ACTIVATIONS)
    assert {c.kw["act"] for c in bias_cases if c.kw.get("clamp") is not None} == set(ACTIVATIONS)
    assert {c.kw["act"] for c in bias_cases if c.x.isnan().any()} == set(ACTIVATIONS)
    assert {c.dtype for c in bias_cases} == {torch.float16, torch.float32, torch.float64}
    ops = {c.op.__name__ for c in selftest._upfirdn2d_cases("cpp", gen)}
    assert ops == {"upfirdn2d", "upsample2d", "downsample2d", "filter2d"}


def test_cpp_passes_records_its_verdict_and_later_loads_reuse_it(verdicts, monkeypatch):
    verdict = build.verify("cpp")
    assert verdict.passed, verdict.reason()
    assert verdict.checks > 150 and not verdict.failures and verdict.error is None
    data = stored(verdicts)
    assert data["passed"] and data["kind"] == "cpp" and data["checks"] == verdict.checks
    assert selftest.Verdict.from_json(data) == verdict
    assert selftest.run("cpp").seconds < 3  # the check itself, once torch is warm: ~0.1 s here

    build.reset()  # a new process: the stored verdict is read, the check not run again
    monkeypatch.setattr(selftest, "run", lambda kind: pytest.fail("self-check re-ran"))
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(bias_act(x, act="lrelu", impl="cpp"), bias_act(x, act="lrelu", impl="ref"))


def test_wrong_second_derivative_falls_back_to_ref_warns_once_and_is_remembered(verdicts, monkeypatch):
    def off(original, x, b, dy, mode, *rest):
        y = original(x, b, dy, mode, *rest)
        return y + 0.01 if mode == KernelMode.GRAD2 else y  # only the gradient of the gradient

    patch_kernel(monkeypatch, "bias_act", off)
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    # First use inside no_grad (a sampling loop): the check must still differentiate.
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="self-check against 'ref' failed.*bias_act.*dd"):
        y = bias_act(x, b, act="lrelu")
    assert torch.equal(y, bias_act(x, b, act="lrelu", impl="ref"))
    data = stored(verdicts)
    assert not data["passed"] and data["error"] is None
    assert data["failures"] and {f["quantity"] for f in data["failures"]} <= {"ddx", "ddb"}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls, of any op, are quiet
        bias_act(x, b, act="tanh")
        f = torch.ones(2, 2)
        assert torch.equal(upfirdn2d(x, f), upfirdn2d(x, f, impl="ref"))
    with pytest.raises(build.OpsSelfTestError, match="self-check.*ganbrush ops selftest --impl cpp"):
        bias_act(x, impl="cpp")  # asked for by name: an error, not a silent fallback

    build.reset()  # a new process: the failed verdict stands without re-running the check
    monkeypatch.setattr(selftest, "run", lambda kind: pytest.fail("self-check re-ran"))
    with pytest.warns(RuntimeWarning, match="self-check against 'ref' failed"):
        assert torch.equal(bias_act(x, b, act="swish"), bias_act(x, b, act="swish", impl="ref"))


def test_strict_mode_turns_a_failed_check_into_an_error(verdicts, monkeypatch):
    patch_kernel(monkeypatch, "upfirdn2d", lambda original, *args: original(*args) * 1.001)
    monkeypatch.setenv(build.STRICT_ENV, "1")
    with pytest.raises(build.OpsBuildError, match="self-check.*upsample2d.*GANBRUSH_OPS_STRICT"):
        upfirdn2d(torch.randn(1, 1, 4, 4), torch.ones(2, 2))


def test_relu_that_maps_nan_to_zero_is_caught(verdicts, monkeypatch):
    """The bug the review found in ops_math.h (``x > 0 ? x : 0``), re-created in the kernel's output."""

    def nan_to_zero(original, x, b, dy, mode, dim, act, *rest):
        y = original(x, b, dy, mode, dim, act, *rest)
        return y.nan_to_num(nan=0.0) if mode == KernelMode.FORWARD and act == 1 else y

    patch_kernel(monkeypatch, "bias_act", nan_to_zero)
    verdict = selftest.run("cpp")
    assert not verdict.passed
    assert {(c.case, c.quantity) for c in verdict.failures} == {("relu NaN", "y"), ("relu NaN clamp=1", "y")}
    assert "relu NaN" in verdict.reason()


def test_compiled_relu_keeps_nan_like_ref():
    x = torch.tensor([float("nan"), -1.0, 0.0, 2.0], requires_grad=True)
    for impl in ("cpp", "ref"):
        y = bias_act(x, act="relu", gain=1.0, impl=impl)
        (dx,) = torch.autograd.grad(y, x, torch.ones(4))
        assert y[0].isnan() and y[1:].tolist() == [0.0, 0.0, 2.0], impl
        assert dx.tolist() == [1.0, 0.0, 0.0, 1.0], impl  # torch's threshold_backward passes NaN's gradient


def test_a_launch_failure_is_a_failed_verdict(verdicts, monkeypatch):
    def crash(original, *args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")

    patch_kernel(monkeypatch, "upfirdn2d", crash)
    verdict = build.verify("cpp")
    assert not verdict.passed and "raised RuntimeError: CUDA error: an illegal memory access" in verdict.error
    assert stored(verdicts)["error"] == verdict.error
    x = torch.randn(1, 2, 5, 5)
    with pytest.warns(RuntimeWarning, match="illegal memory access"):
        assert torch.equal(upfirdn2d(x, torch.ones(3, 3)), upfirdn2d(x, torch.ones(3, 3), impl="ref"))


def test_cli_selftest_reruns_and_replaces_a_failed_verdict(verdicts, monkeypatch, capsys):
    patch_kernel(monkeypatch, "bias_act", lambda original, *args: original(*args) * 1.01)
    assert ganbrush_cli.main(["ops", "selftest", "--impl", "cpp"]) == 1
    out = capsys.readouterr().out
    assert "cpp: FAILED" in out and "bias_act" in out and str(verdicts / "selftest-cpp.json") in out
    assert not stored(verdicts)["passed"]

    monkeypatch.undo()  # the kernel is right again, e.g. after a driver update
    monkeypatch.setattr(build, "verdict_path", lambda kind: verdicts / f"selftest-{kind}.json")
    assert ganbrush_cli.main(["ops", "selftest", "--impl", "cpp"]) == 0
    assert "cpp: passed" in capsys.readouterr().out
    assert stored(verdicts)["passed"]
    x = torch.randn(3, 4)
    torch.testing.assert_close(bias_act(x, act="elu", impl="cpp"), bias_act(x, act="elu", impl="ref"))


def test_kernel_lookup_on_another_thread_does_not_wait_for_the_check(verdicts, monkeypatch):
    """Autograd runs CUDA backward passes on its own thread while the checking thread holds the
    build lock; the kernels' module lookup there must not wait for that lock (a deadlock)."""
    blocked = []

    def lookup_elsewhere(original, *args):
        if not blocked:
            other = threading.Thread(target=ops_impl.extension, args=("cpp",), daemon=True)
            other.start()
            other.join(timeout=5)
            blocked.append(other.is_alive())
        return original(*args)

    patch_kernel(monkeypatch, "upfirdn2d", lookup_elsewhere)
    assert build.verify("cpp").passed
    assert blocked == [False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cli_selftest_cuda_without_a_gpu_is_one_line(capsys):
    assert ganbrush_cli.main(["ops", "selftest", "--impl", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganbrush: error: cannot self-check the cuda ops:") and "\n" not in err


@pytest.mark.skipif(not torch.cuda.is_available() or build.missing_prerequisite("cuda") is not None,
                    reason="no GPU or no CUDA toolchain")
def test_cuda_passes_its_selfcheck(verdicts):
    verdict = build.verify("cuda")
    assert verdict.passed, verdict.reason()
    assert stored(verdicts, "cuda")["device"].startswith("cuda")
