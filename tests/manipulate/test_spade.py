"""SPADE networks: shapes at 64 and 128 px, the labels really condition both generators, the
VAE style encoder and its KL term, the multi-scale discriminator, the synthesizer file."""

import pytest
import torch

from ganbrush_core.weights import save_safetensors
from manipulate.labels import NUM_CLASSES, one_hot
from manipulate.spade import (
    SPADE,
    ConcatGenerator,
    ConcatResBlock,
    MultiscaleDiscriminator,
    NormKind,
    SpadeGenerator,
    StyleEncoder,
    Synthesizer,
    SynthesizerConfig,
    SynthesizerError,
    kl_divergence,
    load_synthesizer,
    reparameterize,
    resize_onehot,
    save_synthesizer,
)

SMALL = dict(channels=4, max_channels=16, z_dim=8, spade_hidden=8, encoder_channels=4)


def _labels(n: int, res: int, seed: int = 0) -> torch.Tensor:
    """int64 [n, res, res]: blocks of random classes (8 x 8 cells), so every class shows up."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, NUM_CLASSES, (n, res // 8, res // 8), generator=g)
    return cells.repeat_interleave(8, 1).repeat_interleave(8, 2)


@pytest.mark.parametrize("res", [64, 128])
@pytest.mark.parametrize("kind", ["spade", "concat"])
def test_shapes_and_block_count_follow_the_resolution(kind, res):
    torch.manual_seed(0)
    cfg = SynthesizerConfig(kind=kind, resolution=res, **SMALL)
    model = Synthesizer(cfg)
    assert isinstance(model.generator, SpadeGenerator if kind == "spade" else ConcatGenerator)
    assert len(model.generator.blocks) == cfg.num_blocks == {64: 5, 128: 6}[res]
    assert cfg.widths()[-1] == 4 and cfg.widths()[0] == 16
    image = torch.rand(2, 3, res, res) * 2 - 1
    mu, logvar = model.style_encoder(image)
    assert mu.shape == logvar.shape == (2, 8)
    out = model(one_hot(_labels(2, res)), reparameterize(mu, logvar))
    assert out.shape == (2, 3, res, res) and out.abs().max() <= 1
    with pytest.raises(SynthesizerError, match=r"one-hot labels \[N, 11, 64, 64\]"):
        Synthesizer(SynthesizerConfig(kind=kind, **SMALL))(one_hot(_labels(1, 32)), torch.zeros(1, 8))
    with pytest.raises(SynthesizerError, match="power of two"):
        SynthesizerConfig(resolution=96)


@pytest.mark.parametrize("norm", list(NormKind))
def test_spade_changes_the_output_where_the_labels_changed(norm):
    torch.manual_seed(0)
    model = Synthesizer(SynthesizerConfig(norm=norm, **SMALL))
    labels = _labels(2, 64)
    with torch.no_grad():
        model(one_hot(labels), torch.randn(2, 8))  # BatchNorm running statistics from one batch
    model.eval()
    edited = labels.clone()
    edited[:, 40:56, 40:56] = (labels[:, 40:56, 40:56] + 3) % NUM_CLASSES  # one 16 px square, every pixel
    z = torch.randn(2, 8)
    with torch.no_grad():
        diff = (model(one_hot(edited), z) - model(one_hot(labels), z)).abs().mean(1)
    inside, far = diff[:, 40:56, 40:56].mean(), diff[:, :16, :16].mean()
    assert inside > 0.01 and inside > 5 * far


def test_gradients_reach_every_label_conditioning_conv():
    torch.manual_seed(0)
    model = Synthesizer(SynthesizerConfig(**SMALL))
    model(one_hot(_labels(2, 64)), torch.randn(2, 8)).square().mean().backward()
    spades = [m for m in model.generator.modules() if isinstance(m, SPADE)]
    assert len(spades) >= 2 * len(model.generator.blocks)
    for spade in spades:
        for conv in (spade.shared[0], spade.gamma, spade.beta):
            assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_the_baseline_feeds_the_labels_into_every_block():
    torch.manual_seed(0)
    cfg = SynthesizerConfig(kind="concat", **SMALL)
    model = Synthesizer(cfg)
    onehot = one_hot(_labels(2, 64))
    seen = []
    blocks = list(model.generator.blocks)
    assert all(isinstance(b, ConcatResBlock) for b in blocks)
    hooks = [b.norm_0.register_forward_hook(lambda m, inp, out: seen.append(inp[0])) for b in blocks]
    model(onehot, torch.randn(2, 8)).square().mean().backward()
    for h in hooks:
        h.remove()
    assert len(seen) == len(blocks)
    for block, inp in zip(blocks, seen):  # the block's input ends with the labels at its own size
        assert torch.equal(inp[:, -NUM_CLASSES:], resize_onehot(onehot, inp.shape[-2:]))
        grad = block.conv_0.parametrizations.weight.original.grad[:, -NUM_CLASSES:]
        assert grad.abs().sum() > 0  # and the labels' channels are trained in every block
    assert not any(isinstance(m, SPADE) for m in model.modules())


def test_style_encoder_and_kl():
    torch.manual_seed(0)
    enc = StyleEncoder(SynthesizerConfig(**SMALL))
    mu, logvar = enc(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert mu.shape == logvar.shape == (3, 8)
    zeros = torch.zeros(4, 8)
    assert kl_divergence(zeros, zeros) == 0
    # KL(N(1, 1) || N(0, 1)) is 1/2 per dimension; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2.
    assert kl_divergence(torch.ones(4, 8), zeros).item() == pytest.approx(4.0)
    assert kl_divergence(zeros, torch.ones(4, 8)).item() == pytest.approx(8 * (torch.e - 2) / 2)
    z = reparameterize(torch.full((20000, 1), 2.0), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0))))
    assert z.mean().item() == pytest.approx(2.0, abs=0.1) and z.std().item() == pytest.approx(3.0, abs=0.1)
    with pytest.raises(SynthesizerError, match=r"images \[N, 3, 64, 64\]"):
        enc(torch.zeros(1, 3, 32, 32))


def test_multiscale_discriminator_returns_logits_and_features_per_scale():
    torch.manual_seed(0)
    D = MultiscaleDiscriminator(NUM_CLASSES, channels=8, layers=4, num_d=3)
    image = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = D(image, one_hot(_labels(2, 64)))
    assert len(out) == 3
    for scale, (logits, features) in enumerate(out):
        side = 64 >> scale
        assert logits.shape == (2, 1, side // 8, side // 8)
        assert [f.shape[1] for f in features] == [8, 16, 32, 64]
        assert features[0].shape[-1] == side // 2
    sum(logits.mean() for logits, _ in out).backward()
    assert image.grad.abs().sum() > 0
    # The labels are part of what it judges.
    other = D(image, one_hot(_labels(2, 64, seed=1)))
    assert not torch.equal(other[0][0], out[0][0])


@pytest.mark.parametrize("kind", ["spade", "concat"])
def test_save_load_round_trip(kind, tmp_path):
    torch.manual_seed(0)
    model = Synthesizer(SynthesizerConfig(kind=kind, **SMALL))
    onehot, image = one_hot(_labels(2, 64)), torch.rand(2, 3, 64, 64) * 2 - 1
    model(onehot, model.encode_style(image)).mean().backward()  # moves BatchNorm statistics and the power iteration
    model.eval()
    with torch.no_grad():
        expected = model(onehot, model.encode_style(image))
    exact = save_synthesizer(model, tmp_path / "f32.safetensors", dtype=torch.float32, metadata={"step": "1"})
    loaded = load_synthesizer(exact)
    assert loaded.cfg == model.cfg and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(onehot, loaded.encode_style(image)), expected)
    half = load_synthesizer(save_synthesizer(model, tmp_path / "f16.safetensors"))
    assert all(v.dtype != torch.float16 for v in half.state_dict().values())
    with torch.no_grad():
        torch.testing.assert_close(half(onehot, half.encode_style(image)), expected, atol=2e-2, rtol=0)
    assert (tmp_path / "f16.safetensors").stat().st_size < 0.6 * exact.stat().st_size


def test_other_files_are_refused_in_one_line(tmp_path):
    other = save_safetensors(tmp_path / "enc.safetensors", {"w": torch.zeros(2)}, format="ganbrush-encoder",
                             version="1", config={})
    with pytest.raises(SynthesizerError, match="not a ganbrush synthesizer") as e:
        load_synthesizer(other)
    assert "\n" not in str(e.value)
    with pytest.raises(SynthesizerError, match="no such synthesizer file"):
        load_synthesizer(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(SynthesizerError, match="corrupt"):
        load_synthesizer(tmp_path / "junk.safetensors")
    # A config whose networks do not match the stored tensors.
    model = Synthesizer(SynthesizerConfig(**SMALL))
    cfg = {**model.cfg.to_dict(), "channels": 8}
    bad = save_safetensors(tmp_path / "bad.safetensors", model.state_dict(), format="ganbrush-synthesizer",
                           version="1", config=cfg)
    with pytest.raises(SynthesizerError, match="do not match its config"):
        load_synthesizer(bad)
