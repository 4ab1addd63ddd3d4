"""ganbrush .safetensors round trip, format detection and one-line errors for bad files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from stylegan_ops import CheckpointError, Generator, GeneratorConfig, load_generator, save_generator
from stylegan_ops.networks import channels_for


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(3)
    cfg = GeneratorConfig(img_resolution=16, z_dim=16, w_dim=24, mapping_layers=3, channels=channels_for(16, 256, 16),
                          conv_clamp=256)
    G = Generator(cfg).eval()
    G.mapping_network.w_avg.normal_()
    for name, p in G.named_parameters():
        if name.endswith(("noise_strength", "bias")):
            p.data.normal_(0, 0.2)  # non-zero, so a lost tensor shows in the output
    return G


def test_round_trip_is_exact(G, tmp_path):
    path = save_generator(G, tmp_path / "g.safetensors")
    G2 = load_generator(path)
    assert G2.cfg == G.cfg
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G2(z, truncation_psi=0.7), G(z, truncation_psi=0.7), rtol=0, atol=0)


def test_fp16_round_trip_is_close_and_small(G, tmp_path):
    full = save_generator(G, tmp_path / "g32.safetensors")
    half = save_generator(G, tmp_path / "g16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    G2 = load_generator(half)
    assert all(p.dtype == torch.float32 for p in G2.parameters())
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert (G2(z) - G(z)).abs().max() < 2e-2


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n0000000000", "not a generator checkpoint"),
        (b"\x80\x04\x95", "truncated or corrupt pickle"),
        (b"PK\x03\x04garbage", "truncated or corrupt torch file"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_generator(path)
    text = str(e.value)
    assert str(path) in text and message in text and "\n" not in text


def test_truncated_safetensors(G, tmp_path):
    path = save_generator(G, tmp_path / "g.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt safetensors"):
        load_generator(path)


def test_wrong_kind_of_safetensors(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a ganbrush generator"):
        load_generator(path)


def test_config_mismatch_is_reported(G, tmp_path):
    path = tmp_path / "g.safetensors"
    tensors = {k: v for k, v in G.state_dict().items() if not k.endswith("resample_filter")}
    cfg = G.cfg.to_dict() | {"mapping_layers": 4}
    save_file(tensors, str(path), metadata={"format": "ganbrush.generator", "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="missing"):
        load_generator(path)


def test_missing_file_and_missing_default(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "nope.pt")
    import stylegan_ops.checkpoints as ck

    monkeypatch.setattr(ck, "DEFAULT_GENERATOR", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="no default generator"):
        load_generator()


def test_save_refuses_other_suffixes(G, tmp_path):
    with pytest.raises(CheckpointError, match="safetensors"):
        save_generator(G, tmp_path / "g.pt")
