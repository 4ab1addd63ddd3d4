"""Masked local edits (Image2StyleGAN++) and exact compositing, on a small random generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.masks import MaskError, check_mask
from manipulate.directions import sefa
from manipulate.edits import move
from manipulate.local_edit import composite, load_mask, local_edit
from stylegan_ops.networks import Generator, sample_w


@pytest.fixture(scope="module")
def G(make_generator) -> Generator:
    return make_generator()


def half_mask(n: int = 1, size: int = 16) -> torch.Tensor:
    mask = torch.zeros(n, 1, size, size)
    mask[..., :, : size // 2] = 1  # the left half may change
    return mask


def masked_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> float:
    return float(((a - b).square() * weight).sum() / (weight.sum() * 3))


def test_composite_keeps_the_outside_exactly():
    gen = torch.Generator().manual_seed(0)
    original, edited = torch.rand(2, 2, 3, 16, 16, generator=gen) * 2 - 1
    mask = half_mask(2)
    out = composite(original, edited, mask)
    assert torch.equal(out[..., 8:], original[..., 8:]) and torch.equal(out[..., :8], edited[..., :8])
    soft = composite(original, edited, mask, feather=1.5)
    assert torch.equal(soft[..., 8:], original[..., 8:])  # feathering never reaches outside the mask
    assert torch.allclose(soft[..., :3], edited[..., :3])  # far inside: the edit
    border = soft[..., 7] - original[..., 7]
    assert float(border.abs().max()) < float((edited[..., 7] - original[..., 7]).abs().max())
    with pytest.raises(ValueError, match="one shape"):
        composite(original, edited[:, :, :8], mask)


def test_masks_are_read_white_is_change_and_resized(tmp_path):
    a = np.zeros((40, 40), np.uint8)
    a[:, 20:] = 200  # light grey counts as white
    Image.fromarray(a).convert("RGB").save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", 8)
    assert mask.shape == (1, 1, 8, 8) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[..., 4:].eq(1).all() and mask[..., :4].eq(0).all()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(MaskError, match="empty"):
        load_mask(tmp_path / "empty.png", 8)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(MaskError, match="not a readable image"):
        load_mask(tmp_path / "bad.png", 8)
    with pytest.raises(MaskError, match="no such mask"):
        load_mask(tmp_path / "missing.png", 8)


def test_check_mask_refuses_wrong_masks():
    with pytest.raises(MaskError, match="mask is 8x8 but the image is 16x16"):
        check_mask(torch.ones(1, 1, 8, 8), 16)
    with pytest.raises(MaskError, match="binarise"):
        check_mask(torch.full((1, 1, 16, 16), 0.5), 16)
    assert issubclass(MaskError, ValueError)


def test_local_edit_follows_the_edit_inside_and_the_original_outside(G):
    ws = sample_w(G, 2, seed=3)[:, None].repeat(1, G.num_ws, 1)
    edited = move(ws, sefa(G, num=1, scale_samples=300)[0], 4.0)
    mask = half_mask(2)
    with torch.no_grad():
        keep, want = G.synthesis(ws), G.synthesis(edited)
    calls = []
    params_before = [p.clone() for p in G.parameters()]
    result = local_edit(G, ws, edited, mask, steps=40, lr=0.05, progress=lambda s, t, losses: calls.append((s, t)))
    assert calls[-1] == (40, 40) and len(calls) == 40
    assert result.generator is G and result.ws.shape == ws.shape
    assert all(torch.equal(a, b) for a, b in zip(params_before, G.parameters()))
    assert all(p.requires_grad for p in G.parameters())  # G's flags are restored
    outside_before = masked_mse(want, keep, 1 - mask)
    outside_after = masked_mse(result.image, keep, 1 - mask)
    inside_after = masked_mse(result.image, want, mask)
    assert outside_after < 0.5 * outside_before
    assert inside_after < 0.5 * masked_mse(keep, want, mask)  # the edit is kept inside
    with torch.no_grad():
        assert torch.allclose(result.image, G.synthesis(result.ws), atol=1e-5)


def test_zero_steps_return_the_edited_render_and_shapes_are_checked(G):
    ws = sample_w(G, 1, seed=4)[:, None].repeat(1, G.num_ws, 1)
    edited = ws + 0.5
    result = local_edit(G, ws, edited, half_mask(), steps=0)
    with torch.no_grad():
        assert torch.equal(result.image, G.synthesis(edited))
    with pytest.raises(ValueError, match="ws"):
        local_edit(G, ws, edited[:, :3], half_mask(), steps=1)
    with pytest.raises(MaskError):
        local_edit(G, ws, edited, torch.zeros(1, 1, 16, 16), steps=1)
