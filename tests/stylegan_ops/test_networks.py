"""StyleGAN2 networks: shapes, latent conventions, truncation, noise, regulariser gradients."""

import pytest
import torch

from stylegan_ops.networks import (
    Discriminator,
    Generator,
    GeneratorConfig,
    ModConv,
    ModulatedConv2d,
    channels_for,
    minibatch_stddev,
    set_modconv,
)


def small_generator(res=16, mapping_layers=3, **kw) -> Generator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=res, z_dim=24, w_dim=32, mapping_layers=mapping_layers,
                          channels=channels_for(res, 256, 16), **kw)
    return Generator(cfg).eval()


@pytest.mark.parametrize("res", [4, 8, 32])
def test_generator_shapes_for_any_resolution(res):
    G = small_generator(res)
    assert G.num_ws == 2 * (res.bit_length() - 1) - 2
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, res, res) and torch.isfinite(img).all()


def test_mapping_depth_and_dims_follow_the_config():
    G = small_generator(mapping_layers=5)
    assert len(G.mapping_network.layers) == 5
    assert G.mapping_network.layers[0].weight.shape == (32, 24)


def test_truncation_pulls_towards_w_avg_with_cutoff():
    G = small_generator()
    G.mapping_network.w_avg.normal_()
    z = torch.randn(2, G.z_dim)
    full = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.w_avg.expand_as(full))
    half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], 0.5 * (full[:, :2] + G.w_avg))
    torch.testing.assert_close(half[:, 2:], full[:, 2:])


def test_w_avg_tracks_the_mean_when_asked():
    G = small_generator()
    before = G.w_avg.clone()
    G.mapping(torch.randn(8, G.z_dim))
    assert torch.equal(G.w_avg, before)
    G.mapping(torch.randn(8, G.z_dim), update_w_avg=True)
    assert not torch.equal(G.w_avg, before)


def test_noise_modes():
    G = small_generator()
    for block in G.synthesis_network.blocks.values():
        for layer in ("conv0", "conv1"):
            if hasattr(block, layer):
                getattr(block, layer).noise_strength.data.fill_(0.5)
    ws = G.mapping(torch.randn(2, G.z_dim))
    const1, const2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
    assert torch.equal(const1, const2)
    assert not torch.allclose(G.synthesis(ws, "random"), const1)
    assert not torch.allclose(G.synthesis(ws, "none"), const1)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, "fixed")


def test_style_layers_are_independent():
    """Changing one layer's w changes the image; style mixing is per-layer."""
    G = small_generator()
    ws = G.mapping(torch.randn(1, G.z_dim))
    other = G.mapping(torch.randn(1, G.z_dim))
    mixed = ws.clone()
    mixed[:, -1] = other[:, -1]  # only the last toRGB
    assert not torch.allclose(G.synthesis(mixed), G.synthesis(ws))


def test_bad_latent_shapes_are_refused():
    G = small_generator()
    with pytest.raises(ValueError, match="z must be"):
        G.mapping(torch.randn(2, 7))
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.randn(2, 3, G.w_dim))


def test_discriminator_and_minibatch_stddev():
    D = Discriminator(16, channels=channels_for(16, 256, 16))
    img = torch.randn(4, 3, 16, 16)
    assert D(img).shape == (4, 1)
    y = minibatch_stddev(torch.randn(8, 6, 4, 4), group_size=4)
    assert y.shape == (8, 7, 4, 4)
    same = minibatch_stddev(torch.ones(4, 2, 4, 4))
    assert torch.allclose(same[:, -1], torch.full((4, 4, 4), 1e-4))  # sqrt(eps) for identical samples
    with pytest.raises(ValueError, match="expected images"):
        D(torch.randn(4, 3, 8, 8))


def test_r1_and_path_length_need_second_order_gradients():
    """R1 differentiates D's input gradient; path length differentiates G's w gradient."""
    D = Discriminator(8, channels=channels_for(8, 256, 16))
    real = torch.randn(4, 3, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())

    G = small_generator(8)
    ws = G.mapping(torch.randn(2, G.z_dim)).detach().requires_grad_(True)
    img = G.synthesis(ws)
    (gw,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    gw.square().sum().backward()
    assert G.synthesis_network.blocks.b8.conv0.conv.weight.grad.abs().sum() > 0


def test_explicit_noise_maps_override_the_noise_mode():
    G = small_generator().eval()
    ws = G.mapping(torch.randn(2, G.z_dim))
    maps = G.noise_maps()
    assert [m.shape[-1] for m in maps] == [4, 8, 8, 16, 16]
    with torch.no_grad():
        for conv in G.synthesis_network.styled_convs():
            conv.noise_strength.fill_(0.5)
        const = G.synthesis(ws, noise_mode="const")
        assert torch.allclose(G.synthesis(ws, noise_mode="none", noises=maps), const, atol=1e-6)
        per_image = [torch.randn(2, 1, m.shape[-2], m.shape[-1]) for m in maps]
        other = G.synthesis(ws, noises=per_image)
        assert not torch.allclose(other, const, atol=1e-3)
        # Each image of the batch uses its own maps.
        assert torch.allclose(G.synthesis(ws[1:], noises=[m[1:] for m in per_image]), other[1:], atol=1e-5)
    with pytest.raises(ValueError, match="noises must hold 5"):
        G.synthesis(ws, noises=maps[:2])


@pytest.mark.parametrize("res", [8, 32])
def test_batched_modconv_equals_grouped(make_generator, res):
    """Both ModConv modes compute the same image and the same gradients (up to float rounding),
    with demodulation, without it (toRGB) and through the upsampling convs."""
    G = make_generator(res, channel_base=256, channel_max=32)
    ws = G.mapping(torch.randn(3, G.z_dim)).detach()
    outs, grads = {}, {}
    for mode in ModConv:
        set_modconv(G, mode)
        assert all(m.mode is mode for m in G.modules() if isinstance(m, ModulatedConv2d))
        w = ws.clone().requires_grad_(True)
        G.zero_grad(set_to_none=True)
        img = G.synthesis(w, noise_mode="const")
        (img * torch.linspace(-1, 1, img.numel()).reshape(img.shape)).sum().backward()
        outs[mode], grads[mode] = img.detach(), (w.grad, G.synthesis_network.blocks["b8"].conv0.conv.weight.grad)
    torch.testing.assert_close(outs[ModConv.BATCHED], outs[ModConv.GROUPED], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads[ModConv.BATCHED], grads[ModConv.GROUPED]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert outs[ModConv.GROUPED].abs().max() > 0.01  # not a trivially zero image


def test_unknown_modconv_mode_is_refused(small_generator):
    with pytest.raises(ValueError, match="fused"):
        set_modconv(small_generator, "fused")
