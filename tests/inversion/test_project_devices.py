"""invert() on a chosen device, and the generator's synthesis under autocast (mixed precision)."""

from __future__ import annotations

import pytest
import torch

from ganbrush_core.devices import DeviceError
from ganbrush_core.metrics import lpips_model
from inversion.project import ProjectionSettings, invert, projection_settings
from stylegan_ops.networks import Generator, GeneratorConfig, channels_for

HAS_CUDA = torch.cuda.is_available()
FAST = dict(w_avg_samples=500, seed=0)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channels=channels_for(32, 512, 32))
    return Generator(cfg).eval()


@pytest.fixture(scope="module")
def perceptual():
    return lpips_model("vgg")


@pytest.fixture(scope="module")
def target(G) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return G(torch.randn(1, G.z_dim)).clamp(-1, 1)


def test_cpu_and_auto_give_the_result_of_the_generators_own_device(G, perceptual, target):
    base = invert(G, target, steps=2, perceptual=perceptual, **FAST)
    for device in ("cpu", torch.device("cpu")) + (() if HAS_CUDA else ("auto",)):
        inv = invert(G, target, steps=2, perceptual=perceptual, device=device, **FAST)
        assert inv.ws.device.type == inv.reconstruction.device.type == "cpu"
        assert all(m.device.type == "cpu" for m in inv.noises)
        torch.testing.assert_close(inv.ws, base.ws, rtol=0, atol=0)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_before_any_work(G, target):
    calls = []
    with pytest.raises(DeviceError, match="use cpu"):
        invert(G, target, steps=2, device="cuda", progress=lambda *a: calls.append(a), **FAST)
    assert not calls


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["w+", "w", "pti"])
def test_cuda_moves_generator_latents_and_noise_together(G, target, method):
    inv = invert(G, target, method=method, steps=3, pti_steps=2, device="cuda", **FAST)
    assert next(G.parameters()).device.type == "cpu"  # the caller's generator stays where it was
    assert inv.ws.device.type == inv.reconstruction.device.type == "cpu"
    assert all(m.device.type == "cpu" for m in inv.noises)
    assert inv.render(G).shape == target.shape  # a PTI delta applies to the CPU generator


@pytest.mark.parametrize("method", ["w+", "pti"])  # pti: the projector's loop ("w") and the tuning loop
def test_mixed_precision_runs_and_lands_close_to_float32(G, perceptual, target, method):
    steps = dict(steps=12, pti_steps=6 if method == "pti" else 0)
    full = invert(G, target, method=method, perceptual=perceptual, **steps, **FAST)
    mixed = invert(G, target, method=method, perceptual=perceptual, mixed_precision=True, **steps, **FAST)
    assert not torch.equal(mixed.ws, full.ws)  # the bf16 path really ran
    assert mixed.reconstruction.dtype == torch.float32 and torch.isfinite(mixed.ws).all()
    # Both made progress and bf16 ended near float32's loss. The projector's ("w", the PTI pivot)
    # noise maps and perturbed w take another path after the first rounding, so only its loss is
    # compared; W+ stays on float32's path (about 0.005 mean difference after 20 steps).
    first = full.history[0]["lpips"]
    assert full.final_losses["lpips"] < first and mixed.final_losses["lpips"] < first
    assert abs(mixed.final_losses["lpips"] - full.final_losses["lpips"]) < 0.15 * full.final_losses["lpips"]
    if method == "w+":
        assert (mixed.reconstruction - full.reconstruction).abs().mean() < 0.02


def test_mixed_precision_is_a_checked_switch():
    assert ProjectionSettings().mixed_precision is False
    assert projection_settings(mixed_precision=True).mixed_precision is True
    with pytest.raises(ValueError, match="mixed_precision must be True or False"):
        projection_settings(mixed_precision="yes")
