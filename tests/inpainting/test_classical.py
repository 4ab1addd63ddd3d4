"""Classical baselines behind the ``inpaint(image, mask)`` conventions."""

import pytest
import torch

from inpainting import GLCIC_METHODS, METHODS, Method, inpaint

CLASSICAL = [m for m in Method if m not in (Method.EDGECONNECT, *GLCIC_METHODS)]  # the learned ones
# Mean absolute error (in [-1, 1] units) allowed inside the hole of a smooth gradient. PatchMatch
# copies nearby patches rather than interpolating, so it gets a looser bound.
MAX_HOLE_ERROR = {Method.TELEA: 0.06, Method.NS: 0.06, Method.BIHARMONIC: 0.005, Method.PATCHMATCH: 0.08}


def _gradient(h: int = 64, w: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([0.6 * xx, 0.5 * yy, 0.3 * (xx + yy) / 2])[None]


@pytest.mark.parametrize("method", CLASSICAL, ids=lambda m: m.value)
def test_fills_a_smooth_gradient_and_keeps_known_pixels(method):
    image = _gradient()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 24:40, 20:36] = 1
    out = inpaint(image, mask, method=method).image
    assert out.shape == image.shape and out.dtype == image.dtype
    keep = (mask == 0).expand_as(image)
    assert torch.equal(out[keep], image[keep])
    hole = (mask == 1).expand_as(image)
    err = (out[hole] - image[hole]).abs().mean().item()
    assert err < MAX_HOLE_ERROR[method], f"{method.value}: mean hole error {err:.4f}"
    # Not a no-op: the hole was painted over with something close to the gradient, not left as is.
    painted = image.clone()
    painted[hole] = 1.0
    refilled = inpaint(painted, mask, method=method).image
    assert (refilled[hole] - image[hole]).abs().mean().item() < MAX_HOLE_ERROR[method]


@pytest.mark.parametrize("method", [Method.TELEA, Method.BIHARMONIC], ids=lambda m: m.value)
def test_batches_and_empty_masks(method):
    image = torch.cat([_gradient(32, 48), -_gradient(32, 48)])
    mask = torch.zeros(2, 1, 32, 48)
    mask[0, :, 8:16, 8:20] = 1  # the second image has no hole
    out = METHODS[method](image, mask)
    assert torch.equal(out[1], image[1])
    assert torch.equal(out[0], METHODS[method](image[:1], mask[:1])[0])
    assert not torch.equal(out[0], image[0])
