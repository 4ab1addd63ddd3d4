"""Official checkpoints (rosinality .pt, NVIDIA .pkl) load, convert and reproduce the official
networks' outputs; hostile pickles are refused or defused without running their code.

The oracles in ``official_layouts`` are functional re-implementations of the official forward
passes that read the official key layouts directly (cross-checked against each other there).
"""


import official_layouts as official  # beside this file (pytest puts its folder on sys.path)
import pytest
import torch

from stylegan_ops import CheckpointError, load_generator, save_generator

TOL = 1e-4  # the contract is 1e-3; we hold ourselves to tighter


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("kind,legacy", [("train", False), ("convert", False), ("train", True)])
def test_rosinality_checkpoint_reproduces_official_outputs(tmp_path, kind, legacy):
    path = tmp_path / "ros.pt"
    ckpt = official.make_rosinality_checkpoint(path, size=32, style_dim=48, n_mlp=3, kind=kind, legacy_format=legacy,
                                               channels={4: 32, 8: 32, 16: 24, 32: 16})
    G = load_generator(path)
    assert (G.img_resolution, G.z_dim, G.w_dim, G.num_ws) == (32, 48, 48, 8)
    assert len(G.mapping_network.layers) == 3 and G.cfg.channels == {4: 32, 8: 32, 16: 24, 32: 16}
    g_sd, latent_avg = ckpt["g_ema"], ckpt["latent_avg"]
    torch.manual_seed(0)
    z = torch.randn(3, 48)
    with torch.no_grad():
        ws = G.mapping(z)
        assert max_diff(ws[:, 0], official.rosinality_mapping(g_sd, z)) < TOL
        want = official.rosinality_forward(g_sd, ws, input_is_latent=True)
        assert max_diff(G.synthesis(ws, noise_mode="const"), want) < TOL
        truncated = official.rosinality_forward(g_sd, z, input_is_latent=False, truncation=0.6,
                                                truncation_latent=latent_avg)
        assert max_diff(G(z, truncation_psi=0.6), truncated) < TOL


def test_rosinality_without_latent_avg_estimates_it(tmp_path):
    path = tmp_path / "ros.pt"
    ckpt = official.make_rosinality_checkpoint(path, size=16, style_dim=32, n_mlp=2, with_latent_avg=False)
    assert "latent_avg" not in ckpt
    G = load_generator(path)
    mean = official.rosinality_mapping(ckpt["g_ema"], torch.randn(20000, 32)).mean(0)
    assert max_diff(G.w_avg, mean) < 0.1 * mean.abs().max().item()


@pytest.mark.parametrize(
    "opts",
    [
        dict(conv_clamp=256, mapping_layers=2, protocol=3, module_dict_style="torch17"),
        dict(conv_clamp=0.3, mapping_layers=5, protocol=4, module_dict_style="current"),  # clamp really clips
        dict(conv_clamp=None, mapping_layers=3, protocol=3, legacy_kwargs=True, img_resolution=16),
    ],
)
def test_nvidia_pickle_reproduces_official_outputs(tmp_path, opts):
    path = tmp_path / "snapshot.pkl"
    raw = official.make_nvidia_pickle(path, **opts)
    G = load_generator(path)
    assert len(G.mapping_network.layers) == opts["mapping_layers"]
    assert G.cfg.conv_clamp == opts["conv_clamp"]
    torch.manual_seed(1)
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        for psi, cutoff in [(1.0, None), (0.5, None), (0.7, 4)]:
            want = official.nvidia_forward(raw, z=z, truncation_psi=psi, truncation_cutoff=cutoff)
            got = G(z, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const")
            assert max_diff(got, want) < TOL, (psi, cutoff)
        ws = G.mapping(z)
        for mode in ("const", "none"):
            want = official.nvidia_forward(raw, ws=ws, noise_mode=mode)
            assert max_diff(G.synthesis(ws, noise_mode=mode), want) < TOL


def test_convert_round_trip_keeps_outputs(tmp_path):
    src = tmp_path / "snapshot.pkl"
    official.make_nvidia_pickle(src, conv_clamp=256)
    G = load_generator(src)
    G2 = load_generator(save_generator(G, tmp_path / "g.safetensors"))
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, truncation_psi=0.8), G2(z, truncation_psi=0.8))


def test_embedded_source_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_source.pkl"
    raw = official.make_malicious_pickle(path, marker)
    G = load_generator(path)
    assert not marker.exists()
    z = torch.randn(1, G.z_dim)
    with torch.no_grad():
        assert max_diff(G(z), official.nvidia_forward(raw, z=z)) < TOL


@pytest.mark.parametrize("via", ["exec", "system"])
def test_code_running_pickle_is_refused_without_running(tmp_path, via):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    official.make_code_exec_pickle(path, marker, via=via)
    with pytest.raises(CheckpointError, match="refusing to load") as e:
        load_generator(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_rosinality_with_foreign_globals_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "payload": Evil()}, path)
    refusal = r"refused: the file asks to load the Python object (builtins\.)?exec,"
    with pytest.raises(CheckpointError, match=refusal) as e:
        load_generator(path)
    assert not marker.exists()
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # never torch's advice to load it anyway


def test_conditional_and_truncated_pickles_are_explained(tmp_path):
    cond = tmp_path / "cond.pkl"
    official.make_nvidia_pickle(cond, c_dim=4)
    with pytest.raises(CheckpointError, match="conditional"):
        load_generator(cond)
    whole = tmp_path / "whole.pkl"
    official.make_nvidia_pickle(whole)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt pickle"):
        load_generator(cut)
    not_g = tmp_path / "notg.pt"
    torch.save({"d": {"w": torch.zeros(1)}}, not_g)
    with pytest.raises(CheckpointError, match="no rosinality generator"):
        load_generator(not_g)
