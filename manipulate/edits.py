"""Edits of W+ latents: moves along directions, style mixing, interpolation.

All functions take and return ``ws`` ``[N, num_ws, w_dim]`` (W+, as :func:`inversion.invert`
returns them) and never modify their inputs. Layer ranges are half-open ``ws`` index ranges
(see :mod:`manipulate.directions`).
"""

from __future__ import annotations

import torch

from manipulate.directions import Direction, LayerRange


def _check_ws(ws: torch.Tensor) -> None:
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got {tuple(ws.shape)}")


def _layer_slice(ws: torch.Tensor, layers: LayerRange | None) -> slice:
    if layers is None:
        return slice(0, ws.shape[1])
    start, stop = layers
    if not 0 <= start < stop <= ws.shape[1]:
        raise ValueError(f"layer range {start}-{stop} is outside 0-{ws.shape[1]} (half-open ws indices)")
    return slice(start, stop)


def project_out(vector: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """``vector`` with its components along ``others`` removed (conditional editing, InterFaceGAN
    section 3.3), renormalised to unit length. Raises if nothing is left."""
    if not others:
        return vector
    basis, _ = torch.linalg.qr(torch.stack([o.double() for o in others], dim=1))  # [w_dim, k] orthonormal
    v = vector.double() - basis @ (basis.T @ vector.double())
    norm = float(v.norm())
    if norm < 1e-6:
        raise ValueError("the direction lies within the span of the conditions; nothing is left to edit")
    return (v / norm).to(vector.dtype)


def move(ws: torch.Tensor, direction: Direction, strength: float, layers: LayerRange | None = None,
         conditions: list[Direction] | None = None) -> torch.Tensor:
    """``ws`` moved by ``strength * direction.scale`` along the direction's vector, on
    ``layers`` (default: the direction's own range), optionally with ``conditions`` projected out."""
    _check_ws(ws)
    vector = direction.vector
    if conditions:
        vector = project_out(vector, [c.vector for c in conditions])
    if vector.shape[-1] != ws.shape[-1]:
        raise ValueError(f"direction {direction.name!r} has {vector.shape[-1]} dims but ws have {ws.shape[-1]}")
    out = ws.clone()
    out[:, _layer_slice(ws, layers if layers is not None else direction.layers)] += (
        strength * direction.scale * vector.to(ws))
    return out


def style_mix(ws: torch.Tensor, other: torch.Tensor, layers: LayerRange) -> torch.Tensor:
    """``ws`` with the styles of ``layers`` taken from ``other`` (coarse layers: pose and shape;
    fine layers: colour and texture). ``other`` is ``[N or 1, num_ws, w_dim]``."""
    _check_ws(ws)
    _check_ws(other)
    if other.shape[1:] != ws.shape[1:]:
        raise ValueError(f"style_mix needs latents of one shape, got {tuple(ws.shape)} and {tuple(other.shape)}")
    out = ws.clone()
    sl = _layer_slice(ws, layers)
    out[:, sl] = other[:, sl].to(ws).expand(ws.shape[0], -1, -1)
    return out


def interpolate(ws: torch.Tensor, other: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Linear interpolation in W+: ``(1 - t) * ws + t * other`` (``t`` a number or ``[T]`` for a
    sequence, giving ``[T, N, num_ws, w_dim]``). Linear in W is the path StyleGAN's perceptual
    path length is measured along."""
    _check_ws(ws)
    if other.shape != ws.shape:
        raise ValueError(f"interpolate needs latents of one shape, got {tuple(ws.shape)} and {tuple(other.shape)}")
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return torch.stack([ws.lerp(other, float(v)) for v in t])
    return ws.lerp(other, float(t))
