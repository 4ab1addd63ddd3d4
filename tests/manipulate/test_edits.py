"""Latent edits: moves along directions (with conditions), style mixing, interpolation."""

from __future__ import annotations

import pytest
import torch

from manipulate.directions import Direction
from manipulate.edits import interpolate, move, project_out, style_mix


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


@pytest.fixture
def ws() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 6, 8)


def test_move_changes_only_the_chosen_layers_by_strength_times_scale(ws):
    d = Direction("smile", unit(torch.randn(8)), layers=(1, 4), scale=2.0)
    out = move(ws, d, strength=1.5)
    assert torch.equal(out[:, :1], ws[:, :1]) and torch.equal(out[:, 4:], ws[:, 4:])
    assert torch.allclose(out[:, 1:4] - ws[:, 1:4], (3.0 * d.vector).expand(2, 3, 8), atol=1e-6)
    out2 = move(ws, d, strength=1.0, layers=(0, 6))
    assert not torch.equal(out2[:, 0], ws[:, 0])
    assert torch.equal(move(ws, d, 0.0), ws)
    assert ws.data_ptr() != out.data_ptr()


def test_conditions_are_projected_out(ws):
    a = unit(torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0]))
    b = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
    v = project_out(a, [b])
    assert float(v @ b) == pytest.approx(0.0, abs=1e-6) and float(v.norm()) == pytest.approx(1.0)
    out = move(ws, Direction("x", a, (0, 6)), 1.0, conditions=[Direction("y", b, (0, 6))])
    assert torch.allclose((out - ws)[..., 0], torch.zeros(2, 6), atol=1e-6)
    with pytest.raises(ValueError, match="span"):
        project_out(b, [b])


def test_style_mix_and_interpolate(ws):
    other = torch.randn(1, 6, 8)
    mixed = style_mix(ws, other, (3, 6))
    assert torch.equal(mixed[:, :3], ws[:, :3])
    assert torch.equal(mixed[:, 3:], other[:, 3:].expand(2, -1, -1))
    b = torch.randn_like(ws)
    assert torch.equal(interpolate(ws, b, 0.0), ws)
    assert torch.allclose(interpolate(ws, b, 1.0), b)
    seq = interpolate(ws, b, torch.linspace(0, 1, 5))
    assert seq.shape == (5, 2, 6, 8)
    assert torch.allclose(seq[2], (ws + b) / 2, atol=1e-6)


def test_bad_requests_are_refused(ws):
    d = Direction("x", unit(torch.randn(8)), (0, 6))
    with pytest.raises(ValueError, match="outside"):
        move(ws, d, 1.0, layers=(2, 9))
    with pytest.raises(ValueError, match="dims"):
        move(ws, Direction("y", unit(torch.randn(4)), (0, 6)), 1.0)
    with pytest.raises(ValueError, match="one shape"):
        style_mix(ws, torch.randn(1, 5, 8), (0, 2))
    with pytest.raises(ValueError, match=r"\[N, num_ws, w_dim\]"):
        move(ws[0], d, 1.0)
