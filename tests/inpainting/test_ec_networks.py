"""EdgeConnect networks: shapes and ranges, paper defaults, the 70x70 PatchGAN receptive field, and
the ganbrush .safetensors format."""

import pytest
import torch

from inpainting import (
    CheckpointError,
    EdgeConnect,
    EdgeGenerator,
    InpaintGenerator,
    PatchDiscriminator,
    checkpoints,
    load_edgeconnect,
    load_generator,
    save_edgeconnect,
    save_generator,
)


def _tiny_pair(seed: int = 0) -> EdgeConnect:
    torch.manual_seed(seed)
    return EdgeConnect(EdgeGenerator(8, 1), InpaintGenerator(8, 1)).eval()


@pytest.mark.parametrize("size", [(64, 64), (68, 60)])
def test_generator_shapes_and_ranges(size):
    model = _tiny_pair()
    with torch.no_grad():
        e = model.edge_generator(torch.rand(2, 3, *size))
        y = model.inpaint_generator(torch.rand(2, 4, *size))
    assert e.shape == (2, 1, *size) and y.shape == (2, 3, *size)
    assert 0 <= e.min() and e.max() <= 1 and 0 <= y.min() and y.max() <= 1


def test_generators_refuse_bad_shapes():
    model = _tiny_pair()
    with pytest.raises(ValueError, match="multiples of 4"):
        model.edge_generator(torch.rand(1, 3, 66, 64))
    with pytest.raises(ValueError, match=r"\[N, 4, H, W\]"):
        model.inpaint_generator(torch.rand(1, 3, 64, 64))


def test_paper_defaults():
    g1, g2 = EdgeGenerator(), InpaintGenerator()
    assert (g1.cfg.channels, g1.cfg.residual_blocks, g1.cfg.spectral_norm) == (64, 8, True)
    assert (g2.cfg.channels, g2.cfg.residual_blocks, g2.cfg.spectral_norm) == (64, 8, False)
    # Bottleneck at 4x the width after two stride-2 convs; dilation 2 in the residual blocks.
    first = g1.middle[0].conv_block[1]
    assert first.in_channels == 256 and first.dilation == (2, 2) and first.bias is None
    assert g2.middle[0].conv_block[1].bias is not None
    strides = [m.stride for m in g1.encoder if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(1, 1), (2, 2), (2, 2)]
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g2.modules()) == 5 + 2 * 8


@pytest.mark.parametrize("spectral_norm", [True, False])
def test_discriminator_sees_a_70x70_patch(spectral_norm):
    torch.manual_seed(0)
    d = PatchDiscriminator(3, channels=8, use_spectral_norm=spectral_norm).eval()
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out, feats = d(x)
    assert len(feats) == 5 and out.shape[1] == 1
    assert 0.01 < out.min() and out.max() < 0.99  # fresh spectral norm is sane in eval mode
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    support = x.grad[0].abs().sum(0) > 0
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    assert (rows.max() - rows.min() + 1).item() == 70
    assert (cols.max() - cols.min() + 1).item() == 70


def test_ganbrush_format_round_trip(tmp_path):
    model = _tiny_pair(seed=1)
    # Move the spectral-norm u/v off their init so the round trip has to carry them.
    model.edge_generator.train()
    with torch.no_grad():
        model.edge_generator(torch.rand(1, 3, 16, 16))
    model.eval()
    e_path, i_path = save_edgeconnect(model, tmp_path / "e.safetensors", tmp_path / "i.safetensors")
    loaded = load_edgeconnect(e_path, i_path)
    assert loaded.edge_generator.cfg == model.edge_generator.cfg
    for a, b in ((model, loaded),):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.edge_generator(x), loaded.edge_generator(x))
    half = save_generator(model.inpaint_generator, tmp_path / "half.safetensors", dtype=torch.float16)
    y = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert (load_generator(half)(y) - model.inpaint_generator(y)).abs().max() < 1e-2


def test_save_refuses_overwrite_and_wrong_suffix(tmp_path):
    g = _tiny_pair().edge_generator
    path = save_generator(g, tmp_path / "g.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        save_generator(g, path)
    assert path.read_bytes() == before
    save_generator(g, path, force=True)
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_generator(g, tmp_path / "g.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary files left


def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    path = save_generator(_tiny_pair().edge_generator, tmp_path / "g.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:200])
    for bad in (cut, tmp_path / "missing.safetensors"):
        with pytest.raises(CheckpointError) as e:
            load_generator(bad)
        assert bad.name in str(e.value) and "\n" not in str(e.value)


def test_missing_default_model_says_which_flag_to_use(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_INPAINT", tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="missing.safetensors.*--weights"):
        load_edgeconnect()
