"""Upsample, FIR-filter and downsample 2-D images in one op (``upfirdn2d``).

For each image plane: insert ``up - 1`` zeros between pixels, pad (negative pads crop),
convolve with the filter ``f`` (a true convolution unless ``flip_filter``; ``gain`` scales the
output), and keep every ``down``-th pixel.

Conventions: ``x`` is ``[N, C, H, W]``. ``f`` is a 2-D ``[fh, fw]`` filter or a 1-D ``[k]``
separable filter applied along both axes. ``up``, ``down``: int or ``(x, y)``. ``padding``: int,
``(x, y)`` or ``(x0, x1, y0, y1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylegan_ops.ops import impl as _impl

IntPair = int | Sequence[int]


def _pair(v: IntPair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    vx, vy = (int(i) for i in v)
    if vx < 1 or vy < 1:
        raise ValueError(f"{name} factors must be >= 1, got {(vx, vy)}")
    return vx, vy


def _padding(padding: IntPair) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, (x, y) or (x0, x1, y0, y1), got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """``(width, height)`` of a filter; a 1-D filter is square; None means ``1 x 1``."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    return (f.shape[-1], f.shape[0])


def setup_filter(
    f,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into a float32 filter tensor for :func:`upfirdn2d`.

    A 1-D tap list stays 1-D (separable) when ``separable`` is true; by default only long
    filters (>= 8 taps) stay separable, short ones become their 2-D outer product. Both forms
    give the same result. ``normalize`` scales the taps to sum to 1 (before ``gain``).
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter taps must be 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 1,
    down: IntPair = 1,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample by ``up``, pad, FIR-filter with ``f``, downsample by ``down``.

    Output size along x: ``(W * upx + padx0 + padx1 - fw) // downx + 1``.
    ``impl``: ``"ref"``, ``"cpp"``, ``"cuda"``, or None for the fastest available one.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = filter_size(f)
    out_w = (x.shape[3] * upx + px0 + px1 - fw) // downx + 1
    out_h = (x.shape[2] * upy + py0 + py1 - fh) // downy + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(
            f"upfirdn2d output would be empty ({out_h}x{out_w}) for input {tuple(x.shape)}, "
            f"filter {fh}x{fw}, up {(upx, upy)}, down {(downx, downy)}, padding {(px0, px1, py0, py1)}"
        )
    chosen = _impl.choose(impl, x.device)
    if chosen == "ref":
        return _upfirdn2d_ref(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)
    if f.ndim == 1:
        # Separable: a horizontal then a vertical pass, each with half the gain (in log terms).
        g = gain**0.5
        x = _UpFirDn2dCompiled.apply(x, f[None, :], (upx, 1, downx, 1, px0, px1, 0, 0, flip_filter, g, chosen))
        return _UpFirDn2dCompiled.apply(x, f[:, None], (1, upy, 1, downy, 0, 0, py0, py1, flip_filter, g, chosen))
    return _UpFirDn2dCompiled.apply(x, f, (upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain, chosen))


def _upfirdn2d_ref(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    n, c, h, w = x.shape
    # Zero insertion: each pixel is followed by (up - 1) zeros along each axis.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    # Positive padding adds zeros, negative padding crops.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    # conv2d is a correlation: flip the taps for a true convolution.
    f = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


class _UpFirDn2dCompiled(torch.autograd.Function):
    """Compiled upfirdn2d with a 2-D filter. Its gradient is again an upfirdn2d (down and up
    swapped, filter flipped, padding mirrored), so every order of derivative is available."""

    @staticmethod
    def forward(ctx, x, f, cfg):
        upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain, chosen = cfg
        ctx.cfg = cfg
        ctx.in_hw = x.shape[2:]
        ctx.save_for_backward(f)
        ext = _impl.extension(chosen)
        return ext.upfirdn2d(
            x.contiguous(), f.to(torch.float32).contiguous(),
            upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), float(gain),
        )

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain, chosen = ctx.cfg
        (h, w), (oh, ow) = ctx.in_hw, dy.shape[2:]
        fh, fw = f.shape
        grad_cfg = (
            downx, downy, upx, upy,
            fw - px0 - 1, w * upx - ow * downx + px0 - upx + 1,
            fh - py0 - 1, h * upy - oh * downy + py0 - upy + 1,
            not flip_filter, gain, chosen,
        )
        dx = _UpFirDn2dCompiled.apply(dy, f, grad_cfg) if ctx.needs_input_grad[0] else None
        return dx, None, None


def upsample2d(x, f, up: IntPair = 2, padding: IntPair = 0, flip_filter=False, gain=1.0, impl=None):
    """Upsample by ``up`` with filter ``f``; output is ``up`` times the input size (plus padding).
    The gain ``upx * upy`` keeps the mean intensity."""
    upx, upy = _pair(up, "up")
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down: IntPair = 2, padding: IntPair = 0, flip_filter=False, gain=1.0, impl=None):
    """Filter with ``f`` and downsample by ``down``; output is the input size divided by ``down``."""
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def filter2d(x, f, padding: IntPair = 0, flip_filter=False, gain=1.0, impl=None):
    """Filter with ``f`` keeping the size (plus ``padding``)."""
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
