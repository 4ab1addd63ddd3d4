"""``device=`` on the edit APIs: the same result on the CPU by name, results on the CPU, and a
one-line refusal for a GPU that is not there."""

from __future__ import annotations

import pytest
import torch

from ganbrush_core.devices import DeviceError
from manipulate import edit
from manipulate.directions import ganspace, sefa
from manipulate.local_edit import local_edit
from stylegan_ops.networks import sample_w

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def G(make_generator):
    return make_generator()


def test_directions_and_edits_on_a_named_device_match_and_come_back_on_the_cpu(G):
    base = sefa(G, num=2, scale_samples=200)
    for device in ("cpu",) + (() if HAS_CUDA else ("auto",)):
        found = sefa(G, num=2, scale_samples=200, device=device)
        assert all(torch.equal(a.vector, b.vector) and a.vector.device.type == "cpu" for a, b in zip(base, found))
        assert ganspace(G, num=1, samples=300, device=device)[0].vector.device.type == "cpu"
    ws = sample_w(G, 1, seed=3)[:, None].repeat(1, G.num_ws, 1)
    directions = {d.name: d for d in base}
    plain = edit(ws, G, "sefa0=1", directions=directions)
    moved = edit(ws, G, "sefa0=1", directions=directions, device="cpu")
    assert torch.equal(plain.image, moved.image) and moved.ws.device.type == moved.image.device.type == "cpu"
    mask = torch.zeros(1, 1, G.img_resolution, G.img_resolution)
    mask[..., :8, :] = 1
    local = local_edit(G, ws, moved.ws, mask, steps=1, device="cpu")
    assert local.ws.device.type == local.image.device.type == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused(G):
    ws = sample_w(G, 1, seed=3)[:, None].repeat(1, G.num_ws, 1)
    for call in (lambda: sefa(G, num=1, device="cuda"), lambda: ganspace(G, num=1, samples=100, device="cuda"),
                 lambda: edit(ws, G, "x=1", directions={}, device="cuda")):
        with pytest.raises(DeviceError, match="use cpu"):
            call()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_edits_run_on_cuda_and_match_the_cpu(G):
    directions = {d.name: d for d in sefa(G, num=1, scale_samples=200)}
    ws = sample_w(G, 1, seed=3)[:, None].repeat(1, G.num_ws, 1)
    cpu = edit(ws, G, "sefa0=1", directions=directions)
    gpu = edit(ws, G, "sefa0=1", directions=directions, device="cuda")
    assert gpu.image.device.type == "cpu" and next(G.parameters()).device.type == "cpu"
    torch.testing.assert_close(gpu.image, cpu.image, atol=1e-3, rtol=1e-3)
