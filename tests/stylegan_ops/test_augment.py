"""DiffAugment: each transform does exactly what its docstring says, per sample, within its
ranges, and passes gradients through (so G learns through D's augmented view)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylegan_ops.augment import POLICIES, adjust_color, cutout, diff_augment, translate


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(8, 3, 16, 12) * 2 - 1  # [-1, 1], not square, so rows and columns differ


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``img`` [C, H, W] moved so that output (y, x) reads input (y + dy, x + dx); zeros outside."""
    c, h, w = img.shape
    padded = F.pad(img, [abs(dx), abs(dx), abs(dy), abs(dy)])
    return padded[:, abs(dy) + dy : abs(dy) + dy + h, abs(dx) + dx : abs(dx) + dx + w]


def test_translate_shifts_each_sample_by_an_integer_offset_within_the_ratio(x):
    torch.manual_seed(1)
    y = translate(x, ratio=0.25)
    limit_y, limit_x = int(16 * 0.25 + 0.5), int(12 * 0.25 + 0.5)
    offsets = []
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(-limit_y, limit_y + 1) for dx in range(-limit_x, limit_x + 1)
                 if torch.equal(y[i], shifted(x[i], dy, dx))]
        assert len(found) == 1, f"sample {i} is not a pure shift of its input"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # drawn per sample, not once per batch


def test_cutout_zeroes_one_square_per_sample_and_keeps_every_other_pixel(x):
    torch.manual_seed(2)
    y = cutout(x, ratio=0.5)
    side_y, side_x = int(16 * 0.5 + 0.5), int(12 * 0.5 + 0.5)
    boxes = set()
    for i in range(len(x)):
        cut = (y[i] != x[i]).any(0)
        assert torch.equal(y[i][:, ~cut], x[i][:, ~cut])  # untouched outside the box
        assert (y[i][:, cut] == 0).all()  # zero (mid-grey) inside
        rows, cols = cut.any(1).nonzero().flatten(), cut.any(0).nonzero().flatten()
        if len(rows):
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
            assert cut[r0 : r1 + 1, c0 : c1 + 1].all() and int(cut.sum()) == (r1 - r0 + 1) * (c1 - c0 + 1)  # a box
            assert r1 - r0 + 1 <= side_y and c1 - c0 + 1 <= side_x  # at most the square (clipped at edges)
            boxes.add((r0, c0))
    assert len(boxes) > 1


def test_colour_jitter_is_brightness_saturation_contrast_in_range(x):
    torch.manual_seed(3)
    y = adjust_color(x)
    # Saturation scales each pixel's colour around its grey level; contrast and brightness act on
    # the grey levels: grey(y) = (grey(x) + b - M) * c + M, with M the mean of grey(x) + b.
    gx, gy = x.mean(1).flatten(1), y.mean(1).flatten(1)
    for i in range(len(x)):
        brightness = float(gy[i].mean() - gx[i].mean())
        assert -0.5 <= brightness <= 0.5
        a = torch.stack([gx[i], torch.ones_like(gx[i])], 1)
        contrast = torch.linalg.lstsq(a, gy[i][:, None]).solution[0, 0]
        assert 0.5 - 1e-5 <= float(contrast) <= 1.5 + 1e-5
        torch.testing.assert_close(gy[i], (gx[i] - gx[i].mean()) * contrast + gx[i].mean() + brightness,
                                   atol=1e-5, rtol=1e-5)
        cx, cy = x[i] - x[i].mean(0), y[i] - y[i].mean(0)  # colour around the grey level
        saturation = float((cy * cx).sum() / (cx * cx).sum()) / float(contrast)
        assert 0 <= saturation <= 2
        torch.testing.assert_close(cy, cx * saturation * contrast, atol=1e-5, rtol=1e-5)


def test_diff_augment_applies_the_policy_in_order_and_passes_gradients(x):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(4)
    expected = cutout(translate(adjust_color(x)))
    torch.manual_seed(4)
    assert torch.equal(diff_augment(x), expected)
    torch.manual_seed(5)
    translate(x).sum().backward()
    # Each output pixel reads one input pixel or the zero padding: the gradient counts the reads.
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0} and x.grad.sum() > 0.5 * x.numel()
    assert torch.equal(diff_augment(x, ()), x)
    assert POLICIES == ("color", "translation", "cutout")
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(x, ("rotate",))
