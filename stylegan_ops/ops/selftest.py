"""A short self-check of a compiled op build (``cpp`` or ``cuda``) against ``ref``.

Every op the extension exposes is run through the public functions (``bias_act`` with every
activation, with and without clamping, bias along inner and outer dims, NaN inputs;
``upfirdn2d`` with up/down factors, positive and negative padding, 2-D and separable filters,
flip and gain, and the ``upsample2d`` / ``downsample2d`` / ``filter2d`` wrappers): the forward
pass, first gradients and a gradient of a gradient (the R1 / path-length pattern), in float32,
float64 and float16, on a few small shapes plus one large enough to need several parallel
work items (CPU) or grid-stride passes (GPU). The oracle is ``ref`` in float64 on the CPU,
evaluated on the very same (rounded) inputs, so TF32 or fast-math in the reference cannot hide
or fake a difference. On CUDA each case ends with a synchronize, so an asynchronous launch
failure is caught and named in that case.

:func:`run` returns a :class:`Verdict`; :mod:`.build` runs it on first load and stores it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from stylegan_ops.ops import build
from stylegan_ops.ops.bias_act import ACTIVATIONS, bias_act
from stylegan_ops.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

#: Bumped whenever the cases change, so stored verdicts of older checks are not trusted.
VERSION = 1

# Error = max |compiled - ref| / max(1, max |ref|). float32 with --use_fast_math (CUDA) is
# ~1e-5 relative; a wrong kernel is off by far more than these.
TOLERANCES = {
    "cpp": {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 1e-2},
    "cuda": {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2},
}
_DEVICES = {"cpp": "cpu", "cuda": "cuda"}


@dataclass(frozen=True)
class Check:
    """One compared quantity: ``y``, first gradients ``dx``/``db``, second ``ddx``/``ddb``/``ddy``."""

    op: str
    case: str
    quantity: str
    error: float  # inf where NaNs or shapes disagree
    tol: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tol  # False for NaN

    def describe(self) -> str:
        relation = "<=" if self.ok else ">"
        return f"{self.op} {self.case} {self.quantity}: error {self.error:.3g} {relation} tol {self.tol:.3g}"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one self-check of the ``kind`` build on ``device``."""

    kind: str
    device: str
    passed: bool
    checks: int  # quantities compared
    failures: tuple[Check, ...] = ()
    worst: Check | None = None  # the largest error relative to its tolerance
    error: str | None = None  # an exception (build, launch) that stopped the check
    seconds: float = 0.0
    torch: str = field(default_factory=lambda: torch.__version__)
    version: int = VERSION

    def reason(self) -> str:
        """One line: why it failed (or that it passed)."""
        if self.error:
            return self.error
        if self.passed:
            return f"{self.checks} checks passed"
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return f"{len(self.failures)} of {self.checks} checks off, e.g. {self.failures[0].describe()}{more}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        if data.get("version") != VERSION:
            raise ValueError(f"self-check version {data.get('version')} is not {VERSION}")
        data = dict(data)
        data["failures"] = tuple(Check(**c) for c in data["failures"])
        data["worst"] = Check(**data["worst"]) if data["worst"] else None
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# comparison


def _error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if a.shape != e.shape or not torch.equal(a.isnan(), e.isnan()):
        return math.inf
    keep = ~e.isnan()
    a, e = a[keep], e[keep]
    if e.numel() == 0:
        return 0.0
    diff = torch.where(a == e, torch.zeros_like(a), (a - e).abs())  # equal infinities are fine
    return diff.max().item() / max(1.0, e.abs().max().item())


def _grads(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_outputs=None, create_graph=False):
    """torch.autograd.grad with unused inputs as zeros (``ref`` often has no graph where the
    compiled op computes an all-zero second derivative)."""
    if grad_outputs is not None:
        # The same vector-Jacobian product through a scalar: torch.autograd.grad with explicit
        # grad_outputs imports sympy on first use (~0.6 s), more than this whole check.
        outputs = (outputs * grad_outputs).sum()
    if not outputs.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(outputs, inputs, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


def _leaf(t: torch.Tensor | None, device, dtype) -> torch.Tensor | None:
    return None if t is None else t.to(device=device, dtype=dtype).detach().requires_grad_(True)


# ---------------------------------------------------------------------------------------------
# bias_act


@dataclass(frozen=True)
class _BiasActCase:
    name: str
    x: torch.Tensor  # float64 values, already rounded to `dtype`
    b: torch.Tensor | None
    kw: dict
    dtype: torch.dtype
    order: int  # highest derivative compared


def _bias_act_quantities(impl, case: _BiasActCase, dy, vx, vb, device, dtype) -> dict[str, torch.Tensor]:
    """y; dx, db for upstream dy; and d(<dx, vx> + <db, vb>) / d(x, b, dy)."""
    x, b, dy = (_leaf(t, device, dtype) for t in (case.x, case.b, dy))
    inputs = [x] if b is None else [x, b]
    y = bias_act(x, b, impl=impl, **case.kw)
    out = {"y": y}
    if case.order < 1:
        return out
    first = _grads(y, inputs, dy, create_graph=case.order > 1)
    out.update({f"d{n}": g for n, g in zip("xb", first)})
    if case.order > 1:
        loss = (first[0] * vx.to(device, dtype)).sum()
        if b is not None:
            loss = loss + (first[1] * vb.to(device, dtype)).sum()
        names = ["ddx", "ddb"][: len(inputs)] + ["ddy"]
        out.update(zip(names, _grads(loss, inputs + [dy])))
    return out


def _away_from_clamp(x: torch.Tensor, b: torch.Tensor | None, kw: dict, dtype) -> torch.Tensor:
    """Nudge the inputs whose output lies within 1e-3 of the clamp: there the gradient mask may
    legitimately differ between float32 (fast math) and the float64 oracle."""
    if kw.get("clamp") is None:
        return x
    x = x.clone()
    for _ in range(4):
        y = bias_act(x, b, impl="ref", **{**kw, "clamp": None})
        near = (y.abs() - kw["clamp"]).abs() < 1e-3 * max(1.0, kw["clamp"])
        if not near.any():
            break
        x[near] += 0.0101
    return x.to(dtype).double()


def _bias_act_cases(kind: str, gen: torch.Generator) -> Iterator[_BiasActCase]:
    def randn(shape, dtype, scale=2.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype).double()

    def case(name, shape, dim, dtype, order=2, bias=True, **kw):
        x = randn(shape, dtype)
        x.view(-1)[:4] = torch.tensor([25.0, -25.0, 21.0, -21.0])  # softplus' linear regime, saturation
        b = randn([shape[dim]], dtype, 1.0) if bias else None
        kw = {"dim": dim, **kw}
        return _BiasActCase(name, _away_from_clamp(x, b, kw, dtype), b, kw, dtype, order)

    f32, f64 = torch.float32, torch.float64
    for act in sorted(ACTIVATIONS):
        # Rows of 35 contiguous elements per bias value: the vectorised row path.
        yield case(f"{act} [2,6,5,7] dim=1", [2, 6, 5, 7], 1, f32, act=act)
        # A fully connected layer's [N, C] with bias along the last dim (the short-row path),
        # gain and a clamp that bites.
        yield case(f"{act} [4,12] dim=1 gain=0.7 clamp=0.6", [4, 12], 1, f32, act=act, gain=0.7, clamp=0.6)
    yield case("lrelu alpha=0.05 gain=2 clamp=1.5 dim=3", [3, 4, 5, 6], 3, f32, act="lrelu", alpha=0.05, gain=2.0,
               clamp=1.5)
    yield case("lrelu no bias", [3, 40], 0, f32, bias=False, act="lrelu")
    for act in ("tanh", "swish"):
        yield case(f"{act} float64 clamp=0.9", [2, 5, 6], 1, f64, act=act, clamp=0.9)
    yield case("lrelu float16 clamp=1", [2, 8, 5, 6], 1, torch.float16, order=1, act="lrelu", clamp=1.0)
    large = [1, 16, 256, 256] if kind == "cuda" else [2, 8, 48, 48]  # several grid strides / work items
    yield case(f"lrelu clamp=256 {large}", large, 1, f32, order=1, act="lrelu", clamp=256.0)
    # NaN in, NaN out (like torch), and the gradient torch gives there, except where torch's own
    # ELU / SELU gradient at NaN depends on which of its loops ran.
    for act in sorted(ACTIVATIONS):
        c = case(f"{act} NaN", [2, 3, 20], 1, f32, order=0 if act in ("elu", "selu") else 1, act=act)
        c.x.view(-1)[5::7] = math.nan
        yield c
    c = case("relu NaN clamp=1", [2, 3, 20], 1, f32, order=1, act="relu", clamp=1.0)
    c.x.view(-1)[5::7] = math.nan
    yield c


def _check_bias_act(kind: str, case: _BiasActCase, gen: torch.Generator, device) -> list[Check]:
    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(case.dtype).double()

    dy, vx = randn(case.x.shape), randn(case.x.shape)
    vb = None if case.b is None else randn(case.b.shape)
    expected = _bias_act_quantities("ref", case, dy, vx, vb, "cpu", torch.float64)
    actual = _bias_act_quantities(kind, case, dy, vx, vb, device, case.dtype)
    tol = TOLERANCES[kind][case.dtype]
    return [Check("bias_act", case.name, q, _error(actual[q], expected[q]), tol) for q in expected]


# ---------------------------------------------------------------------------------------------
# upfirdn2d


@dataclass(frozen=True)
class _UpFirDnCase:
    name: str
    op: Callable  # upfirdn2d or one of its wrappers, called as op(x, f, impl=..., **kw)
    x: torch.Tensor  # float64 values, rounded to `dtype`
    f: torch.Tensor  # float32 filter
    kw: dict
    dtype: torch.dtype
    order: int
    transposed: bool = False  # feed the compiled op a non-contiguous view


def _upfirdn2d_quantities(impl, case: _UpFirDnCase, dy, v, device, dtype) -> dict[str, torch.Tensor]:
    """y; dx for upstream dy; and d<dx, v>/d(dy) (the gradient of the gradient)."""
    x = case.x.to(device=device, dtype=dtype)
    if case.transposed:
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    x = x.detach().requires_grad_(True)
    y = case.op(x, case.f.to(device), impl=impl, **case.kw)
    out = {"y": y}
    if case.order < 1:
        return out
    dy = _leaf(dy, device, dtype)
    (dx,) = _grads(y, [x], dy, create_graph=case.order > 1)
    out["dx"] = dx
    if case.order > 1:
        (out["ddy"],) = _grads((dx * v.to(device, dtype)).sum(), [dy])
    return out


def _upfirdn2d_cases(kind: str, gen: torch.Generator) -> Iterator[_UpFirDnCase]:
    def case(name, op, shape, f, dtype=torch.float32, order=2, transposed=False, **kw):
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).double()
        return _UpFirDnCase(name, op, x, f, kw, dtype, order, transposed)

    blur = setup_filter([1, 3, 3, 1])
    yield case("[1,3,3,1] [2,3,9,11]", upsample2d, [2, 3, 9, 11], blur)
    yield case("[1,3,3,1] [2,3,12,10]", downsample2d, [2, 3, 12, 10], blur)
    yield case("[1,3,3,1] padding=1", filter2d, [2, 3, 7, 8], blur, padding=1)
    yield case("separable 8 taps", upsample2d, [1, 2, 10, 9], setup_filter([1, 3, 5, 7, 7, 5, 3, 1]))
    odd = (torch.rand([3, 5], generator=gen) - 0.3).float()
    yield case("3x5 up=(3,1) down=(1,2) pad=(2,-1,1,3) flip gain=1.7 strided", upfirdn2d, [2, 3, 7, 9], odd,
               up=(3, 1), down=(1, 2), padding=(2, -1, 1, 3), flip_filter=True, gain=1.7, transposed=True)
    yield case("3x5 up=4 down=3 pad=(-2,1,0,-1)", upfirdn2d, [1, 2, 8, 7], odd, up=4, down=3, padding=(-2, 1, 0, -1))
    yield case("[1,3,3,1] float64", upsample2d, [1, 2, 6, 7], blur, dtype=torch.float64)
    yield case("[1,3,3,1] float16 gain=2", upsample2d, [1, 3, 8, 8], blur, dtype=torch.float16, order=1, gain=2.0)
    large = [1, 8, 192, 192] if kind == "cuda" else [1, 4, 64, 64]  # several grid strides / work items
    yield case(f"[1,3,3,1] {large}", upsample2d, large, blur, order=1)


def _check_upfirdn2d(kind: str, case: _UpFirDnCase, gen: torch.Generator, device) -> list[Check]:
    y_shape = case.op(case.x, case.f, impl="ref", **case.kw).shape
    dy = torch.randn(y_shape, generator=gen, dtype=torch.float64).to(case.dtype).double()
    v = torch.randn(case.x.shape, generator=gen, dtype=torch.float64).to(case.dtype).double()
    expected = _upfirdn2d_quantities("ref", case, dy, v, "cpu", torch.float64)
    actual = _upfirdn2d_quantities(kind, case, dy, v, device, case.dtype)
    tol = TOLERANCES[kind][case.dtype]
    return [Check(case.op.__name__, case.name, q, _error(actual[q], expected[q]), tol) for q in expected]


# ---------------------------------------------------------------------------------------------


def device_name(kind: str) -> str:
    if kind == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def run(kind: str) -> Verdict:
    """Self-check the ``kind`` ops (``"cpp"`` or ``"cuda"``) against ``ref``, whatever a stored
    verdict says (:func:`stylegan_ops.ops.build.verify` stores the result). A mismatch or a failed
    launch is reported in the verdict, not raised; a failed build raises
    :class:`~stylegan_ops.ops.build.OpsBuildError`."""
    if kind not in _DEVICES:
        raise ValueError(f"unknown compiled op kind {kind!r}; expected one of {tuple(_DEVICES)}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(build.unverified(kind))
        # The first load may come from inside torch.no_grad() / inference_mode() / autocast (a
        # sampling loop): without grad mode every gradient compared would be a zero.
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        for device_type in ("cpu", "cuda") if kind == "cuda" else ("cpu",):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        return _run(kind)


def _run(kind: str) -> Verdict:
    device = torch.device(_DEVICES[kind])
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(20)
    checks: list[Check] = []
    error = None
    jobs = [(_check_bias_act, c) for c in _bias_act_cases(kind, gen)]
    jobs += [(_check_upfirdn2d, c) for c in _upfirdn2d_cases(kind, gen)]
    for check, case in jobs:
        try:
            checks += check(kind, case, gen, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # an asynchronous launch failure surfaces here
        except Exception as e:  # a launch or kernel failure: the verdict says where
            lines = str(e).strip().splitlines()
            op = "bias_act" if check is _check_bias_act else case.op.__name__
            error = f"{op} {case.name} raised {type(e).__name__}: {lines[0] if lines else ''}".strip()
            break
    failures = tuple(c for c in checks if not c.ok)
    worst = max(checks, key=lambda c: c.error / c.tol if c.tol else c.error, default=None)
    return Verdict(
        kind=kind,
        device=device_name(kind),
        passed=error is None and not failures and bool(checks),
        checks=len(checks),
        failures=failures,
        worst=worst,
        error=error,
        seconds=round(time.perf_counter() - start, 3),
    )
