"""The public ``inpaint`` API with EdgeConnect: conventions, compositing, any size, user edges,
and agreement with the official pipeline run on the oracle networks."""


import numpy as np
import official_edgeconnect as official  # beside this file (pytest puts its folder on sys.path)
import pytest
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

from ganbrush_core.masks import MaskError
from inpainting import (
    METHODS,
    Method,
    inpaint,
    load_edgeconnect,
    predict_edges,
)


@pytest.fixture(scope="module")
def oracle_and_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("ec")
    edge = official.randomize(official.official_edge_generator(8, 2), seed=11)
    inp = official.randomize(official.official_inpaint_generator(8, 2), seed=12)
    model = load_edgeconnect(official.save_official(edge, d / "e.pth"), official.save_official(inp, d / "i.pth"))
    return edge, inp, model


def _scene(h: int, w: int, seed: int = 0):
    """A picture with real structure (bars and a disc) in [-1, 1] and a box hole through it."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r = torch.where((xx * 4).floor() % 2 == 0, 0.6, -0.4)
    g = torch.where(xx**2 + yy**2 < 0.3, 0.8, -0.6)
    b = yy * 0.5 + torch.randn(h, w, generator=torch.Generator().manual_seed(seed)) * 0.05
    image = torch.stack([r, g, b])[None].clamp(-1, 1)
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 4 : h // 4 + h // 3, w // 3 : w // 3 + w // 3] = 1
    return image, mask


def test_matches_the_official_pipeline_on_the_oracle_networks(oracle_and_model):
    edge_ref, inp_ref, model = oracle_and_model
    image, mask = _scene(64, 64)
    result = inpaint(image, mask, model=model)
    # The official test/eval flow, written out: canny (sigma 2) of the known grey, G1, composite
    # edges, G2, composite image.
    img01 = (image + 1) / 2
    gray_np = rgb2gray(img01[0].permute(1, 2, 0).double().numpy())
    known = mask[0, 0].numpy() == 0
    edges = torch.from_numpy(canny(gray_np, sigma=2, mask=known).astype(np.float32))[None, None]
    gray = torch.from_numpy(gray_np).float()[None, None]
    with torch.no_grad():
        e = edge_ref(torch.cat([gray * (1 - mask) + mask, edges * (1 - mask), mask], 1))
        e = e * mask + edges * (1 - mask)
        out = inp_ref(torch.cat([img01 * (1 - mask) + mask, e], 1))
    merged = (out * mask + img01 * (1 - mask)) * 2 - 1
    assert (result.image - merged).abs().max() < 2e-4
    assert (result.edges - e).abs().max() < 1e-4


@pytest.mark.parametrize("size", [(64, 64), (67, 45), (33, 70)])
def test_any_size_and_known_pixels_are_kept_exactly(oracle_and_model, size):
    _, _, model = oracle_and_model
    image, mask = _scene(*size, seed=1)
    result = inpaint(image, mask, model=model)
    assert result.image.shape == image.shape and result.edges.shape == mask.shape
    keep = (mask == 0).expand_as(image)
    assert torch.equal(result.image[keep], image[keep])
    assert not torch.equal(result.image, image)  # the hole was filled
    assert result.image.min() >= -1 and result.image.max() <= 1


def test_user_edges_replace_the_prediction_inside_the_hole(oracle_and_model):
    _, _, model = oracle_and_model
    image, mask = _scene(64, 64, seed=2)
    predicted = predict_edges(image, mask, model=model)
    auto = inpaint(image, mask, model=model)
    torch.testing.assert_close(auto.edges, predicted)
    # Feeding the predicted map back reproduces the automatic result: the user map is what is used.
    torch.testing.assert_close(inpaint(image, mask, predicted, model=model).image, auto.image)
    drawn = torch.zeros_like(mask)
    drawn[..., 30, :] = 1  # a horizontal line through the hole
    user = inpaint(image, mask, drawn, model=model)
    torch.testing.assert_close(user.edges * mask, drawn * mask)
    torch.testing.assert_close(user.edges * (1 - mask), predicted * (1 - mask))  # Canny outside
    assert (user.image - auto.image).abs().max() > 1e-2
    keep = (mask == 0).expand_as(image)
    assert torch.equal(user.image[keep], image[keep])


def test_bad_inputs_are_clear_errors(oracle_and_model):
    _, _, model = oracle_and_model
    image, mask = _scene(32, 32)
    with pytest.raises(MaskError, match="resize the mask"):
        inpaint(image, mask[..., :16], model=model)
    with pytest.raises(MaskError, match="whole image"):
        inpaint(image, torch.ones_like(mask), model=model)
    with pytest.raises(MaskError, match="binarise"):
        inpaint(image, mask * 0.5, model=model)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        inpaint(image * 127.5 + 127.5, mask, model=model)
    with pytest.raises(ValueError, match="edges"):
        inpaint(image, mask, torch.zeros(1, 1, 16, 16), model=model)
    with pytest.raises(ValueError, match="only used by the edgeconnect"):
        inpaint(image, mask, torch.zeros_like(mask), method="telea")
    with pytest.raises(ValueError, match="choose one of"):
        inpaint(image, mask, method="lama")


def test_registry_names():
    assert {m.value for m in METHODS} == {"edgeconnect", "telea", "ns", "biharmonic", "patchmatch", "glcic",
                                             "glcic-refine"}
    assert set(METHODS) == set(Method)
    assert Method("ns") is Method.NS
