"""``inpaint(..., device=)``: EdgeConnect on a named device, the same result, refusals in one line."""

import official_edgeconnect as official  # beside this file (pytest puts its folder on sys.path)
import pytest
import torch

from ganbrush_core.devices import DeviceError, module_device
from inpainting import inpaint, load_edgeconnect, predict_edges

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("ec")
    edge = official.randomize(official.official_edge_generator(8, 2), seed=11)
    inp = official.randomize(official.official_inpaint_generator(8, 2), seed=12)
    return load_edgeconnect(official.save_official(edge, d / "e.pth"), official.save_official(inp, d / "i.pth"))


@pytest.fixture(scope="module")
def scene():
    image = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, 24, 20)
    mask[..., 6:14, 5:12] = 1
    return image, mask


def test_a_named_device_gives_the_models_own_result(model, scene):
    image, mask = scene
    base = inpaint(image, mask, model=model)
    for device in ("cpu",) + (() if HAS_CUDA else ("auto",)):
        result = inpaint(image, mask, model=model, device=device)
        assert torch.equal(result.image, base.image) and torch.equal(result.edges, base.edges)
        assert result.image.device.type == "cpu"
    assert torch.equal(predict_edges(image, mask, model=model, device="cpu"), base.edges)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused(model, scene):
    image, mask = scene
    with pytest.raises(DeviceError, match="use cpu"):
        inpaint(image, mask, model=model, device="cuda")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_runs_a_copy_and_returns_to_the_cpu(model, scene):
    image, mask = scene
    result = inpaint(image, mask, model=model, device="cuda")
    assert result.image.device.type == "cpu" and module_device(model).type == "cpu"
    torch.testing.assert_close(result.image, inpaint(image, mask, model=model).image, atol=1e-3, rtol=1e-3)
