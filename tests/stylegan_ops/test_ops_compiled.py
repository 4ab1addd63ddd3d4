"""Compiled StyleGAN2 ops (``impl="cpp"`` and, on a GPU, ``impl="cuda"``) against the pure-PyTorch
reference (``impl="ref"``).

Every test draws fresh random inputs (seeded, so failures reproduce) and compares the forward
pass, the first gradients and a gradient of a gradient. Each test runs once per ops_target of the
``ops_target`` fixture (``tests/conftest.py``); a ops_target that cannot be built here is skipped.
"""

from __future__ import annotations

import math
import random
import zlib

import pytest
import torch

from stylegan_ops.ops import build
from stylegan_ops.ops.bias_act import ACTIVATIONS, bias_act
from stylegan_ops.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

# ---------------------------------------------------------------------------------------------
# helpers


def seeded_rng(*key) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def randn(shape, gen, dtype, device, scale=1.0, contiguous=True) -> torch.Tensor:
    """Random normal tensor; non-contiguous (a transposed view) when asked."""
    shape = list(shape)
    if contiguous or len(shape) < 2:
        t = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    else:
        t = (torch.randn(shape[:-2] + shape[-2:][::-1], generator=gen, dtype=torch.float64) * scale).transpose(-1, -2)
    return t.to(device=device, dtype=dtype)


def assert_matches(actual, expected, tol: float, what: str) -> None:
    """``actual`` equals ``expected`` to relative ``tol`` (absolute: ``tol`` x the largest magnitude)."""
    assert (actual is None) == (expected is None), what
    if expected is None:
        return
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def grads_or_zeros(outputs, inputs, grad_outputs=None, create_graph=False):
    """torch.autograd.grad with unused inputs reported as zeros (the reference often has
    no graph at all where the compiled op computes an all-zero second derivative)."""
    if not outputs.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(outputs, inputs, grad_outputs, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


# ---------------------------------------------------------------------------------------------
# bias_act


def bias_act_orders(impl, x, b, dy, vx, vb, **kw):
    """y, first gradients (x, b) for upstream dy, and the gradients of
    <grad_x, vx> + <grad_b, vb> w.r.t. x, b and dy (R1 / path-length style)."""
    x = x.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    dy = dy.detach().clone().requires_grad_(True)
    inputs = [x] if b is None else [x, b]
    y = bias_act(x, b, impl=impl, **kw)
    first = grads_or_zeros(y, inputs, dy, create_graph=True)
    loss = (first[0] * vx).sum()
    if b is not None:
        loss = loss + (first[1] * vb).sum()
    second = grads_or_zeros(loss, inputs + [dy])
    names = ["x", "b"][: len(inputs)]
    out = {"y": y}
    out.update({f"d{n}": g for n, g in zip(names, first)})
    out.update({f"dd{n}": g for n, g in zip(names + ["dy"], second)})
    return out


def check_bias_act(ops_target, x, b, dtype, gen, what, **kw):
    dy = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
    vx = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
    vb = None if b is None else torch.randn(b.shape, generator=gen, dtype=torch.float64).to(b)
    ref = bias_act_orders("ref", x, b, dy, vx, vb, **kw)
    out = bias_act_orders(ops_target.impl, x, b, dy, vx, vb, **kw)
    assert out.keys() == ref.keys()
    for name in ref:
        assert_matches(out[name], ref[name], ops_target.tol[dtype], f"{what} {kw} {name}")


def bias_act_input(shape, gen, dtype, device, contiguous):
    x = randn(shape, gen, dtype, device, scale=3.0, contiguous=contiguous)
    # A few large values reach softplus's linear regime and saturate tanh / sigmoid / elu.
    x[(0,) * (x.ndim - 1)][:4] = torch.tensor([25.0, -25.0, 21.0, -21.0], dtype=dtype)
    return x


@pytest.mark.parametrize("dim", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_matches_ref(ops_target, act, dtype, dim):
    """Every activation x gain x clamp x bias along every dim, up to second order."""
    gen = seeded_rng("bias_act", act, str(dtype), dim)
    shape = [3, 5, 6, 7]  # inner extents 210, 42, 7, 1: both the row and the small-inner paths
    for case, (with_bias, gain, clamp) in enumerate(
        [(wb, g, c) for wb in (True, False) for g in (None, 0.7) for c in (None, 0.5, 3.0)]
    ):
        contiguous = case % 2 == 0
        x = bias_act_input(shape, gen, dtype, ops_target.device, contiguous)
        b = None
        if with_bias:
            # Every other bias is a strided view.
            b = torch.randn(2 * shape[dim], generator=gen, dtype=torch.float64).to(x)[:: 1 + case % 2]
            b = b[: shape[dim]]
        alpha = 0.05 if act == "lrelu" and case % 3 == 0 else None
        check_bias_act(
            ops_target,
            x,
            b,
            dtype,
            gen,
            f"{act} dim={dim} bias={with_bias} contiguous={contiguous}",
            dim=dim,
            act=act,
            alpha=alpha,
            gain=gain,
            clamp=clamp,
        )


def test_bias_act_clamp_actually_clips(ops_target):
    x = torch.linspace(-4, 4, 101, dtype=torch.float64, device=ops_target.device)[None]
    y = bias_act(x, None, act="lrelu", clamp=1.0, impl=ops_target.impl)
    assert (y == 1.0).sum() > 10 and (y.abs() <= 1.0).all()


@pytest.mark.parametrize("shape,dim", [([4, 9], 1), ([4, 9], 0), ([2, 3, 1, 1], 1), ([2, 1, 5, 300], 3)])
def test_bias_act_odd_shapes(ops_target, shape, dim):
    gen = seeded_rng("odd", shape, dim)
    x = randn(shape, gen, torch.float64, ops_target.device, scale=2.0)
    b = randn([shape[dim]], gen, torch.float64, ops_target.device)
    for act in ("lrelu", "swish"):
        check_bias_act(ops_target, x, b, torch.float64, gen, f"{shape} dim={dim}", dim=dim, act=act, clamp=1.5)


def test_bias_act_1d_forward(ops_target):
    gen = seeded_rng("1d")
    x = randn([5], gen, torch.float64, ops_target.device, scale=2.0)
    b = randn([5], gen, torch.float64, ops_target.device)
    torch.testing.assert_close(
        bias_act(x, b, dim=0, act="lrelu", impl=ops_target.impl), bias_act(x, b, dim=0, act="lrelu", impl="ref")
    )


def test_bias_act_1d_bias_gradient(ops_target):
    gen = seeded_rng("1d-grad")
    x = randn([5], gen, torch.float64, ops_target.device, scale=2.0)
    b = randn([5], gen, torch.float64, ops_target.device)
    check_bias_act(ops_target, x, b, torch.float64, gen, "1-D", dim=0, act="lrelu")


def test_bias_act_scalar_and_empty(ops_target):
    x = torch.tensor(-0.7, dtype=torch.float64, device=ops_target.device)
    for act in ACTIVATIONS:
        torch.testing.assert_close(
            bias_act(x, act=act, impl=ops_target.impl), bias_act(x, act=act, impl="ref"), rtol=1e-12, atol=1e-12
        )
    empty = torch.zeros([2, 0, 3], device=ops_target.device)
    out = bias_act(empty, torch.zeros(0, device=ops_target.device), act="lrelu", impl=ops_target.impl)
    assert out.shape == empty.shape


def test_bias_act_large_parallel(ops_target):
    """Rows longer than one parallel chunk, many rows, and the flat bias-free path."""
    gen = seeded_rng("large")
    x = randn([2, 3, 190, 190], gen, torch.float32, ops_target.device)  # 36100 elements per row
    b = randn([3], gen, torch.float32, ops_target.device)
    check_bias_act(ops_target, x, b, torch.float32, gen, "large", act="lrelu", clamp=2.0)
    check_bias_act(ops_target, x, None, torch.float32, gen, "large no bias", act="tanh", gain=2.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_bias_act_low_precision(ops_target, dtype):
    """half / bfloat16 are computed in float: compare with the float32 reference, rounded."""
    gen = seeded_rng("low", str(dtype))
    x32 = randn([2, 8, 5, 6], gen, torch.float32, ops_target.device, scale=2.0).to(dtype).float()
    b32 = randn([8], gen, torch.float32, ops_target.device).to(dtype).float()
    tol = 1e-2 if dtype == torch.float16 else 2e-2
    for act in ACTIVATIONS:
        xh = x32.to(dtype).requires_grad_(True)
        bh = b32.to(dtype).requires_grad_(True)
        y = bias_act(xh, bh, act=act, clamp=1.0, impl=ops_target.impl)
        assert y.dtype == dtype
        y.float().square().sum().backward()
        xr = x32.clone().requires_grad_(True)
        br = b32.clone().requires_grad_(True)
        yr = bias_act(xr, br, act=act, clamp=1.0, impl="ref")
        yr.to(dtype).float().square().sum().backward()
        torch.testing.assert_close(y.float(), yr.to(dtype).float(), rtol=tol, atol=tol)
        torch.testing.assert_close(xh.grad.float(), xr.grad, rtol=tol, atol=tol * 2)
        torch.testing.assert_close(bh.grad.float(), br.grad, rtol=tol * 4, atol=tol * 4 * x32[:, 0].numel())


def test_bias_act_kernel_validates_inputs(ops_target):
    ext = build.load(ops_target.impl)
    x = torch.zeros([2, 3, 4], device=ops_target.device)
    empty = x.new_empty([0])
    with pytest.raises(RuntimeError, match="b must be 1-D with 3"):
        ext.bias_act(x, torch.zeros(4, device=ops_target.device), empty, 0, 1, 2, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="dy must have the shape of x"):
        ext.bias_act(x, empty, torch.zeros(3, device=ops_target.device), 1, 1, 2, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="unknown activation"):
        ext.bias_act(x, empty, empty, 0, 1, 42, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="unknown mode"):
        ext.bias_act(x, empty, empty, 7, 1, 2, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="dim 5 out of range"):
        ext.bias_act(x, torch.zeros(3, device=ops_target.device), empty, 0, 5, 2, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="floating point"):
        ext.bias_act(x.long(), empty, empty, 0, 1, 2, 0.2, 1.0, -1.0)


# ---------------------------------------------------------------------------------------------
# upfirdn2d


def upfirdn2d_orders(impl, x, f, dy, v, **kw):
    """y, dx for upstream dy, and d<dx, v>/d(dy) (the gradient of the gradient)."""
    x = x.detach().clone().requires_grad_(True)
    dy = dy.detach().clone().requires_grad_(True)
    y = upfirdn2d(x, f, impl=impl, **kw)
    (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    (ddy,) = torch.autograd.grad((dx * v).sum(), dy)
    return {"y": y, "dx": dx, "ddy": ddy}


def check_upfirdn2d(ops_target, x, f, dtype, gen, what, grads=True, **kw):
    if not grads:
        ref = upfirdn2d(x, f, impl="ref", **kw)
        assert_matches(upfirdn2d(x, f, impl=ops_target.impl, **kw), ref, ops_target.tol[dtype], f"{what} {kw} y")
        return
    y_shape = upfirdn2d(x, f, impl="ref", **kw).shape
    dy = torch.randn(y_shape, generator=gen, dtype=torch.float64).to(x)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
    ref = upfirdn2d_orders("ref", x, f, dy, v, **kw)
    out = upfirdn2d_orders(ops_target.impl, x, f, dy, v, **kw)
    for name in ref:
        assert out[name].shape == ref[name].shape, f"{what} {kw} {name} shape"
        assert_matches(out[name], ref[name], ops_target.tol[dtype], f"{what} {kw} {name}")


def random_filter(gen, fh, fw, device, separable=False):
    if separable:
        return torch.rand([fw], generator=gen).to(device) + 0.1
    return (torch.rand([fh, fw], generator=gen) - 0.3).to(device)


def output_size(h, w, fh, fw, up, down, pad):
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    return (h * upy + py0 + py1 - fh) // downy + 1, (w * upx + px0 + px1 - fw) // downx + 1


@pytest.mark.parametrize("down", [1, 2, 3, 4])
@pytest.mark.parametrize("up", [1, 2, 3, 4])
def test_upfirdn2d_up_down(ops_target, up, down):
    """All up x down factor pairs with positive, negative and asymmetric padding, 2-D and
    separable filters, flip_filter and gain; float64 and float32."""
    gen = seeded_rng("updown", up, down)
    pads = [(0, 0, 0, 0), (2, 1, 3, 0), (-1, 2, 1, -2), (4, 4, 4, 4), (-2, -1, -3, 0)]
    for case, pad in enumerate(pads):
        dtype = torch.float64 if case % 2 == 0 else torch.float32
        separable = case % 3 == 2
        fh, fw = (4, 4) if separable else (3 + case % 3, 5 - case % 2)
        h, w = 7 + case, 9 - case
        if min(output_size(h, w, fh, fw, (up, up), (down, down), pad)) < 1:
            continue
        x = randn([2, 3, h, w], gen, dtype, ops_target.device, contiguous=case != 1)
        f = random_filter(gen, fh, fw, ops_target.device, separable)
        check_upfirdn2d(
            ops_target,
            x,
            f,
            dtype,
            gen,
            f"case {case}",
            up=up,
            down=down,
            padding=pad,
            flip_filter=case % 2 == 1,
            gain=1.0 + 0.5 * case,
        )


@pytest.mark.parametrize("fw", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("fh", [1, 2, 3, 4, 5, 6, 7, 8])
def test_upfirdn2d_filter_sizes(ops_target, fh, fw):
    gen = seeded_rng("fsize", fh, fw)
    x = randn([1, 2, 11, 10], gen, torch.float64, ops_target.device)
    f = random_filter(gen, fh, fw, ops_target.device)
    up, down = (1 + fh % 3, 1 + fw % 2), (1 + fw % 3, 1 + fh % 2)
    pad = (fw // 2, (fw - 1) // 2, fh - 2, 1 - fh % 3)
    check_upfirdn2d(
        ops_target, x, f, torch.float64, gen, f"{fh}x{fw}", up=up, down=down, padding=pad, flip_filter=fh % 2 == 0
    )
    if fh == fw:  # the 1-D separable form of the same size
        f1 = random_filter(gen, fh, fw, ops_target.device, separable=True)
        check_upfirdn2d(ops_target, x, f1, torch.float64, gen, f"separable {fw}", up=up, down=down, padding=pad)


def test_upfirdn2d_random_configs(ops_target):
    """Random mixes of everything, anisotropic factors included (forward only, many cases)."""
    rng = random.Random(1234)
    gen = seeded_rng("random-configs")
    done = 0
    while done < 60:
        up = (rng.randint(1, 4), rng.randint(1, 4))
        down = (rng.randint(1, 4), rng.randint(1, 4))
        fh, fw = rng.randint(1, 8), rng.randint(1, 8)
        pad = tuple(rng.randint(-4, 6) for _ in range(4))
        h, w = rng.randint(1, 13), rng.randint(1, 13)
        if min(output_size(h, w, fh, fw, up, down, pad)) < 1:
            continue
        dtype = rng.choice([torch.float64, torch.float32])
        x = randn([rng.randint(1, 2), rng.randint(1, 3), h, w], gen, dtype, ops_target.device)
        f = random_filter(gen, fh, fw, ops_target.device, separable=fh == fw and rng.random() < 0.3)
        check_upfirdn2d(
            ops_target,
            x,
            f,
            dtype,
            gen,
            f"random {done}",
            grads=done % 4 == 0,
            up=up,
            down=down,
            padding=pad,
            flip_filter=rng.random() < 0.5,
            gain=rng.uniform(0.5, 3.0),
        )
        done += 1


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 3, 5, 7, 7, 5, 3, 1]], ids=["4", "3", "8sep"])
def test_upfirdn2d_stylegan_wrappers(ops_target, taps):
    """upsample2d / downsample2d / filter2d with setup_filter as the networks use them."""
    gen = seeded_rng("wrappers", len(taps))
    f = setup_filter(taps, device=ops_target.device)
    for dtype in (torch.float64, torch.float32):
        x = randn([2, 4, 12, 10], gen, dtype, ops_target.device)
        for name, op in [("up", upsample2d), ("down", downsample2d), ("filter", filter2d)]:
            y_ref = op(x, f, impl="ref")
            y = op(x, f, impl=ops_target.impl)
            assert y.shape == y_ref.shape
            assert_matches(y, y_ref, ops_target.tol[dtype], f"{name}2d {taps}")
        check_upfirdn2d(ops_target, x, f, dtype, gen, "blur after up-conv", padding=1, gain=4)


def test_upfirdn2d_large_parallel(ops_target):
    """Several work items per plane (tall images) and many planes."""
    gen = seeded_rng("large-upfirdn")
    f = setup_filter([1, 3, 3, 1], device=ops_target.device)
    x = randn([1, 2, 300, 150], gen, torch.float32, ops_target.device)
    check_upfirdn2d(ops_target, x, f, torch.float32, gen, "tall", padding=(2, 1, 2, 1), up=2)
    x = randn([4, 64, 9, 9], gen, torch.float32, ops_target.device)
    check_upfirdn2d(ops_target, x, f, torch.float32, gen, "many planes", padding=1, down=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_upfirdn2d_low_precision(ops_target, dtype):
    gen = seeded_rng("upfirdn-low", str(dtype))
    f = setup_filter([1, 3, 3, 1], device=ops_target.device)
    x = randn([2, 3, 9, 11], gen, torch.float32, ops_target.device).to(dtype)
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    for kw in [dict(up=2, padding=(2, 1, 2, 1), gain=4), dict(down=2, padding=1), dict(padding=(-1, 2, 0, 1))]:
        y = upfirdn2d(x, f, impl=ops_target.impl, **kw)
        assert y.dtype == dtype
        y_ref = upfirdn2d(x.float(), f, impl="ref", **kw)
        torch.testing.assert_close(y.float(), y_ref, rtol=tol, atol=tol)


def test_upfirdn2d_kernel_validates_inputs(ops_target):
    ext = build.load(ops_target.impl)
    dev = ops_target.device
    x = torch.zeros([1, 2, 5, 5], device=dev)
    f = torch.ones([3, 3], device=dev)
    with pytest.raises(RuntimeError, match=r"x must be \[N, C, H, W\]"):
        ext.upfirdn2d(x[0], f, 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="f must be float32"):
        ext.upfirdn2d(x, f.double(), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="2-D"):
        ext.upfirdn2d(x, f[0], 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="factors must be >= 1"):
        ext.upfirdn2d(x, f, 0, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="empty output"):
        ext.upfirdn2d(x, f, 1, 1, 1, 1, -3, -3, 0, 0, False, 1.0)


def test_upfirdn2d_is_a_convolution(ops_target):
    """A hand-checked case: a single impulse reproduces the (unflipped) filter."""
    x = torch.zeros([1, 1, 5, 5], dtype=torch.float64, device=ops_target.device)
    x[0, 0, 2, 2] = 1.0
    f = torch.arange(1.0, 7.0).reshape(2, 3).to(ops_target.device)
    y = upfirdn2d(x, f, padding=(1, 1, 1, 0), impl=ops_target.impl)
    expected = torch.zeros([5, 5], dtype=torch.float64)
    expected[2:4, 1:4] = f.double().cpu()
    torch.testing.assert_close(y[0, 0].cpu(), expected)
    y_flip = upfirdn2d(x, f, padding=(1, 1, 1, 0), flip_filter=True, impl=ops_target.impl)
    torch.testing.assert_close(y_flip[0, 0, 2:4, 1:4].cpu(), f.double().cpu().flip([0, 1]))
    assert math.isclose(y.sum().item(), f.sum().item())
