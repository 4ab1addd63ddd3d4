"""The Projected GAN discriminator: shapes, what is frozen and what is saved, determinism of the
random projections, a few hinge-loss steps that must separate real from fake, bf16 autocast."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from ganbrush_core.backbones import BackboneWeightsError, VGG16Features
from ganbrush_core.gan_losses import GanLoss, discriminator_loss
from ganbrush_core.weights import config_from_dict
from stylegan_ops.projected import ProjectedConfig, ProjectedDiscriminator

# Narrow projections and heads keep the tests fast; the VGG16 is the real one.
SMALL = dict(proj_channels=(8, 8, 16, 16), head_channels=8)


@pytest.fixture(scope="module")
def vgg() -> VGG16Features:
    try:
        return VGG16Features()
    except BackboneWeightsError as e:
        pytest.skip(str(e))


def make(vgg: VGG16Features, torch_seed: int = 0, **kw) -> ProjectedDiscriminator:
    """A small discriminator; ``torch_seed`` seeds the global generator (the heads' init)."""
    torch.manual_seed(torch_seed)
    return ProjectedDiscriminator(ProjectedConfig(**{**SMALL, **kw}), vgg=vgg)


def images(n: int, res: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("res, k, cross_scale", [(64, 4 * 16, True), (32, 3 * 16 + 4, True), (64, 4 * 16, False)])
def test_logit_shape(vgg, res, k, cross_scale):
    # Heads go down to about 4 px; at 32 px relu4_3 is already 4 px and still gets one conv (2x2).
    D = make(vgg, img_resolution=res, cross_scale=cross_scale)
    out = D(images(2, res))
    assert out.shape == (2, k) and out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=rf"expected images \[N, 3, {res}, {res}\]"):
        D(images(2, res * 2))


def test_frozen_parts_pass_gradients_but_take_none(vgg):
    D = make(vgg).requires_grad_(True)  # as a trainer does before its D step: VGG must stay frozen
    assert {id(p) for p in D.parameters()} == {id(p) for p in D.heads.parameters()}
    img = images(2, 64).requires_grad_(True)
    D(img).square().sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    for name, p in D.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())
    assert all(not b.requires_grad for b in [*D.ccm.buffers(), *D.csm.buffers()])


def test_state_dict_has_projections_not_vgg_and_round_trips(vgg):
    D = make(vgg, torch_seed=1).train()
    D(images(4, 64, seed=1))  # moves BN running stats and spectral-norm vectors off their start
    state = D.state_dict()
    assert {k.split(".")[0] for k in state} == {"ccm", "csm", "heads"}
    assert sum(v.numel() for v in state.values()) < 1_000_000  # VGG16's conv weights alone are 14.7M
    other = make(vgg, torch_seed=2, seed=5)
    other.load_state_dict(state)
    x = images(4, 64, seed=2)
    assert torch.equal(D.eval()(x), other.eval()(x))
    assert torch.equal(D.train()(x), other.train()(x))  # one more power iteration, the same on both


def test_projections_follow_their_seed_only(vgg):
    a, b = make(vgg, torch_seed=0, seed=3), make(vgg, torch_seed=1, seed=3)
    c = make(vgg, torch_seed=0, seed=4)
    fixed = [k for k in a.state_dict() if k.startswith(("ccm.", "csm."))]
    assert len(fixed) == 4 + 3
    for key in fixed:
        assert torch.equal(a.state_dict()[key], b.state_dict()[key]), key
        assert not torch.equal(a.state_dict()[key], c.state_dict()[key]), key
    # The heads take the global generator, as every other network does.
    first = "heads.0.0.parametrizations.weight.original"
    assert not torch.equal(a.state_dict()[first], b.state_dict()[first])


def test_to_moves_the_vgg_too(vgg):
    D = copy.deepcopy(make(vgg, img_resolution=32)).double()
    assert D.vgg is not vgg and D.vgg.features[0].weight.dtype == torch.float64
    assert vgg.features[0].weight.dtype == torch.float32


def test_hinge_steps_separate_real_from_fake(vgg):
    # Real: smooth images; fake: the same with high-frequency noise. A few Adam steps on the heads
    # alone must lower the hinge loss on these fixed batches well below its start (1 = chance),
    # and in eval mode (BN running statistics) score the reals above the fakes.
    gen = torch.Generator().manual_seed(0)
    real = F.interpolate(torch.rand(8, 3, 4, 4, generator=gen) * 2 - 1, size=32, mode="bilinear")
    fake = (real + 0.3 * torch.randn(real.shape, generator=gen)).clamp(-1, 1)
    D = make(vgg, img_resolution=32).train()
    opt = torch.optim.Adam(D.parameters(), lr=5e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(8):
        loss = discriminator_loss(D(real), D(fake), GanLoss.HINGE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    D.eval()
    assert D(real).mean() > D(fake).mean() + 0.5


def test_bf16_autocast(vgg):
    D = make(vgg).eval()
    x = images(4, 64).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = D(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    ref = D(x.detach())
    assert torch.corrcoef(torch.stack([out.detach().flatten(), ref.flatten()]))[0, 1] > 0.95


def test_config_round_trip_and_refusals():
    cfg = ProjectedConfig(img_resolution=48, layers=("relu2_2", "relu3_3"), proj_channels=(16, 32), seed=7,
                          cross_scale=False)
    assert config_from_dict(ProjectedConfig, json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ProjectedConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="network order"):
        ProjectedConfig(layers=("relu3_3", "relu2_2"), proj_channels=(8, 8))
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        ProjectedConfig(layers=("relu9_9",), proj_channels=(8,))
    with pytest.raises(ValueError, match="one positive channel count per layer"):
        ProjectedConfig(proj_channels=(8, 8))
    with pytest.raises(ValueError, match="leaves VGG16 layer relu4_3 at 1 px; it needs at least 16 px"):
        ProjectedConfig(img_resolution=8)
