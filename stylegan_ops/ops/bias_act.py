"""Fused bias + activation + gain + clamp.

``y = clamp(gain * act(x + b), -clamp, clamp)``, with ``b`` broadcast along ``dim``.

Three implementations behind one ``impl=`` switch (see :mod:`stylegan_ops.ops.impl`):
``ref`` (pure PyTorch, the test oracle), ``cpp`` (compiled CPU kernel) and ``cuda``.
The compiled paths support first and second order gradients (R1 and path-length
regularisation differentiate through the gradient); third order is not supported.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylegan_ops.ops import impl as _impl


class Activation(enum.IntEnum):
    """Activation codes shared with the C++/CUDA kernels (``enum class Act`` in csrc)."""

    LINEAR = 0
    RELU = 1
    LRELU = 2
    TANH = 3
    SIGMOID = 4
    ELU = 5
    SELU = 6
    SOFTPLUS = 7
    SWISH = 8


class KernelMode(enum.IntEnum):
    """What the compiled kernel computes (``enum class Mode`` in csrc).

    With ``s = x + b`` and ``m = [|gain * act(s)| <= clamp]`` (1 when there is no clamp):
    FORWARD: ``clamp(gain * act(s))``; GRAD: ``dy * gain * act'(s) * m``;
    GRAD2: ``dy * gain * act''(s) * m``.
    """

    FORWARD = 0
    GRAD = 1
    GRAD2 = 2


@dataclass(frozen=True)
class ActivationSpec:
    code: Activation
    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(Activation.LINEAR, lambda x, _: x, 0.0, 1.0),
    "relu": ActivationSpec(Activation.RELU, lambda x, _: torch.relu(x), 0.0, math.sqrt(2)),
    "lrelu": ActivationSpec(Activation.LRELU, lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": ActivationSpec(Activation.TANH, lambda x, _: torch.tanh(x), 0.0, 1.0),
    "sigmoid": ActivationSpec(Activation.SIGMOID, lambda x, _: torch.sigmoid(x), 0.0, 1.0),
    "elu": ActivationSpec(Activation.ELU, lambda x, _: F.elu(x), 0.0, 1.0),
    "selu": ActivationSpec(Activation.SELU, lambda x, _: F.selu(x), 0.0, 1.0),
    "softplus": ActivationSpec(Activation.SOFTPLUS, lambda x, _: F.softplus(x), 0.0, 1.0),
    "swish": ActivationSpec(Activation.SWISH, lambda x, _: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def _resolve(act: str, alpha: float | None, gain: float | None, clamp: float | None):
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.default_alpha if alpha is None else alpha)
    gain = float(spec.default_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if clamp != -1 and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    return spec, alpha, gain, clamp


def _check_bias(x: torch.Tensor, b: torch.Tensor | None, dim: int) -> None:
    if b is None:
        return
    if b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise ValueError(
            f"bias must be 1-D with x.shape[{dim}]={x.shape[dim]} entries, got shape {tuple(b.shape)}"
        )


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain``, clamp to ``[-clamp, clamp]``.

    Args:
        x: any float tensor.
        b: 1-D bias with ``x.shape[dim]`` entries, or None.
        act: one of :data:`ACTIVATIONS` (linear, relu, lrelu, tanh, sigmoid, elu, selu,
            softplus, swish).
        alpha: negative slope for ``lrelu`` (default 0.2); ignored by the others.
        gain: output scale; default is the activation's variance-preserving gain
            (``sqrt(2)`` for relu, lrelu and swish, 1 otherwise).
        clamp: clamp the output to ``[-clamp, clamp]``; None for no clamping.
        impl: ``"ref"``, ``"cpp"``, ``"cuda"``, or None for the fastest available one for
            ``x.device``.
    """
    dim = dim % x.ndim if x.ndim else 0
    _check_bias(x, b, dim)
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    chosen = _impl.choose(impl, x.device)
    if chosen == "ref":
        return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
    return _BiasActCompiled.apply(x, b, dim, int(spec.code), alpha, gain, clamp, chosen)


def _bias_act_ref(x, b, dim, spec: ActivationSpec, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _kernel(chosen, x, b, dy, mode, dim, code, alpha, gain, clamp):
    ext = _impl.extension(chosen)
    empty = x.new_empty([0])
    return ext.bias_act(
        x.contiguous(),
        empty if b is None else b.to(x.dtype).contiguous(),
        empty if dy is None else dy.to(x.dtype).contiguous(),
        int(mode), dim, code, alpha, gain, clamp,
    )


def _reduce_bias_grad(dx: torch.Tensor, dim: int) -> torch.Tensor:
    other = [i for i in range(dx.ndim) if i != dim]
    return dx.sum(other) if other else dx  # sum([]) would sum everything


class _BiasActCompiled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, code, alpha, gain, clamp, chosen):
        ctx.cfg = (dim, code, alpha, gain, clamp, chosen)
        ctx.has_bias = b is not None
        ctx.save_for_backward(x, b if b is not None else x.new_empty([0]))
        return _kernel(chosen, x, b, None, KernelMode.FORWARD, dim, code, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        b = b if ctx.has_bias else None
        dim = ctx.cfg[0]
        dx = _BiasActGradCompiled.apply(dy, x, b, ctx.cfg)
        db = _reduce_bias_grad(dx, dim).to(b.dtype) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None, None


class _BiasActGradCompiled(torch.autograd.Function):
    """``dx = dy * gain * act'(x + b) * mask``; differentiable once more (for R1 / path length)."""

    @staticmethod
    def forward(ctx, dy, x, b, cfg):
        ctx.cfg = cfg
        ctx.has_bias = b is not None
        ctx.save_for_backward(dy, x, b if b is not None else x.new_empty([0]))
        dim, code, alpha, gain, clamp, chosen = cfg
        return _kernel(chosen, x, b, dy, KernelMode.GRAD, dim, code, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        b = b if ctx.has_bias else None
        dim, code, alpha, gain, clamp, chosen = ctx.cfg
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            # The gradient is linear in dy, so its derivative w.r.t. dy is the same map.
            d_dy = _BiasActGradCompiled.apply(d_dx, x, b, ctx.cfg)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            d_x = _kernel(chosen, x, b, d_dx * dy, KernelMode.GRAD2, dim, code, alpha, gain, clamp)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = _reduce_bias_grad(d_x, dim).to(b.dtype)
        return d_dy, d_x, d_b, None
