"""The pure-PyTorch reference ops: checked against their definitions and with gradcheck."""

import itertools
import math

import numpy as np
import pytest
import torch

from stylegan_ops.ops import ACTIVATIONS, bias_act, downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d


def naive_upfirdn2d(x, f, up, down, pad, flip, gain):
    """The definition, one output pixel at a time: zero-upsample, pad, convolve, subsample."""
    x, f = x.numpy(), f.numpy()
    if f.ndim == 1:
        f = np.outer(f, f)
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    n, c, h, w = x.shape
    fh, fw = f.shape
    fc = f if flip else f[::-1, ::-1]  # correlation taps
    oh = (h * upy + py0 + py1 - fh) // downy + 1
    ow = (w * upx + px0 + px1 - fw) // downx + 1
    out = np.zeros((n, c, oh, ow))
    for oy, ox, ky, kx in itertools.product(range(oh), range(ow), range(fh), range(fw)):
        u, v = oy * downy + ky - py0, ox * downx + kx - px0
        if 0 <= u < h * upy and 0 <= v < w * upx and u % upy == 0 and v % upx == 0:
            out[:, :, oy, ox] += fc[ky, kx] * x[:, :, u // upy, v // upx]
    return torch.from_numpy(out * gain)


CASES = [
    # (shape, filter, up, down, padding)
    ((2, 3, 5, 6), [1, 3, 3, 1], (1, 1), (1, 1), (2, 1, 2, 1)),
    ((1, 2, 4, 4), [1, 3, 3, 1], (2, 2), (1, 1), (2, 1, 2, 1)),
    ((1, 2, 8, 7), [1, 3, 3, 1], (1, 1), (2, 2), (1, 1, 1, 1)),
    ((1, 1, 5, 5), [[1, 2, 0], [0, 1, 3]], (3, 1), (1, 2), (-1, 2, 0, 3)),
    ((2, 1, 6, 4), [1, 2, 3, 2, 1], (2, 3), (3, 2), (4, -1, 1, 2)),
]


@pytest.mark.parametrize("shape,taps,up,down,pad", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_ref_matches_definition(shape, taps, up, down, pad, flip):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    f = torch.tensor(taps, dtype=torch.float64)
    gain = 1.7
    got = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
    want = naive_upfirdn2d(x, f, up, down, pad, flip, gain)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_separable_filter_equals_outer_product():
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    f1 = setup_filter([1, 4, 6, 4, 1], separable=True).double()
    f2 = setup_filter([1, 4, 6, 4, 1], separable=False).double()
    assert f1.ndim == 1 and f2.ndim == 2
    for op in (upsample2d, downsample2d, filter2d):
        torch.testing.assert_close(op(x, f1, impl="ref"), op(x, f2, impl="ref"))


def test_resampling_helpers_keep_sizes_and_mean():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and abs(float(f.sum()) - 1) < 1e-6
    x = torch.ones(1, 2, 8, 8)
    up, down, same = upsample2d(x, f, impl="ref"), downsample2d(x, f, impl="ref"), filter2d(x, f, impl="ref")
    assert up.shape[2:] == (16, 16) and down.shape[2:] == (4, 4) and same.shape[2:] == (8, 8)
    # A constant image stays constant away from the zero-padded border.
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1)) and torch.allclose(same[..., 2:-2, 2:-2], torch.ones(1))


def test_upfirdn2d_rejects_bad_arguments():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="N, C, H, W"):
        upfirdn2d(x[0], torch.ones(2, 2))
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d(x, torch.ones(2, 2), padding=-3)
    with pytest.raises(ValueError, match="up factors"):
        upfirdn2d(x, torch.ones(2, 2), up=0)


def test_upfirdn2d_ref_gradcheck():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[1.0, 2.0, 1.0], [0.5, -1.0, 3.0]], dtype=torch.float64)
    fn = lambda t: upfirdn2d(t, f, up=(2, 1), down=(1, 2), padding=(1, 2, 0, 1), gain=2.0, impl="ref")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def reference_activation(name, s, alpha):
    """Definitions written out independently of torch.nn.functional."""
    sig = 1 / (1 + np.exp(-s))
    lam, a = 1.0507009873554805, 1.6732632423543772
    return {
        "linear": s,
        "relu": np.maximum(s, 0),
        "lrelu": np.where(s > 0, s, alpha * s),
        "tanh": np.tanh(s),
        "sigmoid": sig,
        "elu": np.where(s > 0, s, np.expm1(s)),
        "selu": lam * np.where(s > 0, s, a * np.expm1(s)),
        "softplus": np.log1p(np.exp(s)),
        "swish": s * sig,
    }[name]


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_ref_matches_definition(act):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 2
    b = torch.randn(4, dtype=torch.float64)
    y = bias_act(x, b, dim=1, act=act, impl="ref")
    s = (x + b[None, :, None]).numpy()
    want = reference_activation(act, s, 0.2) * ACTIVATIONS[act].default_gain
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
    clamped = bias_act(x, b, dim=1, act=act, gain=1.5, clamp=0.5, impl="ref")
    np.testing.assert_allclose(clamped.numpy(), np.clip(reference_activation(act, s, 0.2) * 1.5, -0.5, 0.5), atol=1e-12)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_ref_gradcheck(act):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, dim=1, act=act, gain=1.3, clamp=2.0, impl="ref")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_validates_arguments():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="bias must be 1-D"):
        bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match="clamp"):
        bias_act(x, clamp=-2)
    with pytest.raises(ValueError, match="impl"):
        bias_act(x, impl="fast")
    assert math.isclose(ACTIVATIONS["lrelu"].default_gain, math.sqrt(2))


def test_preferred_impl_applies_to_calls_without_impl(monkeypatch):
    """Inside ``impl.preferred("ref")`` the networks' ``impl=None`` calls run the reference ops;
    outside it the automatic choice is back."""
    from stylegan_ops.ops import impl

    seen = []
    real_choose = impl.choose

    def spy(choice, device):
        seen.append(real_choose(choice, device))
        return seen[-1]

    monkeypatch.setattr(impl, "choose", spy)
    x = torch.randn(1, 2, 8, 8)
    with impl.preferred("ref"):
        bias_act(x, act="lrelu")
        assert impl.choose(None, x.device) == "ref"
    assert seen[0] == "ref"
    with pytest.raises(ValueError, match="unknown impl"):
        with impl.preferred("fortran"):
            pass
    with impl.preferred("cuda"):  # cannot run on a CPU tensor: the automatic choice stands
        assert impl.choose(None, x.device) == real_choose(None, x.device)
