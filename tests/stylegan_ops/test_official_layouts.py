"""Self-checks of the official-format oracle (tests/stylegan_ops/official_layouts.py).

These never touch ganbrush's loaders. The key check is the cross-check: the rosinality oracle and
the NVIDIA oracle, written independently from two code bases, agree when one network's numbers
are copied into the other's layout (both directions, with truncation and constant noise).
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import official_layouts as ol  # pytest puts this test folder on sys.path
import pytest
import torch

ATOL = 1e-4


# ----------------------------------------------------------------------------------------------
# Mapping between the two layouts (written from the two model definitions).


def ros_to_nvidia(g_sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                  conv_clamp: float | None = None) -> dict[str, Any]:
    """rosinality g_ema state dict -> raw NVIDIA G_ema description usable by nvidia_forward."""
    cfg = ol.rosinality_config(g_sd)
    sd: dict[str, torch.Tensor] = collections.OrderedDict()
    f = ol.fir_2d()

    def layer(dst: str, src: str, noise_idx: int) -> None:
        sd[f"{dst}.weight"] = g_sd[f"{src}.conv.weight"][0]
        sd[f"{dst}.noise_strength"] = g_sd[f"{src}.noise.weight"].reshape([])
        sd[f"{dst}.bias"] = g_sd[f"{src}.activate.bias"]
        sd[f"{dst}.resample_filter"] = f
        sd[f"{dst}.noise_const"] = g_sd[f"noises.noise_{noise_idx}"][0, 0]
        sd[f"{dst}.affine.weight"] = g_sd[f"{src}.conv.modulation.weight"]
        sd[f"{dst}.affine.bias"] = g_sd[f"{src}.conv.modulation.bias"]

    def torgb(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = g_sd[f"{src}.conv.weight"][0]
        sd[f"{dst}.bias"] = g_sd[f"{src}.bias"].reshape(3)
        sd[f"{dst}.affine.weight"] = g_sd[f"{src}.conv.modulation.weight"]
        sd[f"{dst}.affine.bias"] = g_sd[f"{src}.conv.modulation.bias"]

    sd["synthesis.b4.const"] = g_sd["input.input"][0]
    sd["synthesis.b4.resample_filter"] = f
    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for j in range(cfg["log_size"] - 2):
        b = f"synthesis.b{2 ** (j + 3)}"
        sd[f"{b}.resample_filter"] = f
        layer(f"{b}.conv0", f"convs.{2 * j}", 2 * j + 1)
        layer(f"{b}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        torgb(f"{b}.torgb", f"to_rgbs.{j}")
    d = cfg["style_dim"]
    sd["mapping.w_avg"] = latent_avg if latent_avg is not None else torch.zeros(d)
    for i in range(cfg["n_mlp"]):
        sd[f"mapping.fc{i}.weight"] = g_sd[f"style.{i + 1}.weight"]
        sd[f"mapping.fc{i}.bias"] = g_sd[f"style.{i + 1}.bias"]
    init_kwargs = dict(z_dim=d, w_dim=d, mapping_kwargs=dict(num_layers=cfg["n_mlp"]),
                       synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0,
                                             conv_clamp=conv_clamp),
                       c_dim=0, img_resolution=cfg["size"], img_channels=3)
    return dict(class_name="Generator", init_args=(), init_kwargs=init_kwargs, state_dict=sd)


def nvidia_to_ros(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """raw NVIDIA G_ema description -> rosinality g_ema state dict."""
    sd, kw = raw["state_dict"], raw["init_kwargs"]
    g: dict[str, torch.Tensor] = collections.OrderedDict()
    for i in range(kw["mapping_kwargs"]["num_layers"]):
        g[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    g["input.input"] = sd["synthesis.b4.const"][None]
    noises: list[torch.Tensor] = []

    def conv(dst: str, src: str, up: bool) -> None:
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        if up:
            g[f"{dst}.conv.blur.kernel"] = ol.fir_2d(gain=4.0)
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        g[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        g[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        noises.append(sd[f"{src}.noise_const"][None, None])

    def rgb(dst: str, src: str, up: bool) -> None:
        g[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, 3, 1, 1)
        if up:
            g[f"{dst}.upsample.kernel"] = ol.fir_2d(gain=4.0)
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    conv("conv1", "synthesis.b4.conv1", False)
    rgb("to_rgb1", "synthesis.b4.torgb", False)
    for j, res in enumerate(ol.nvidia_block_resolutions(raw)[1:]):
        conv(f"convs.{2 * j}", f"synthesis.b{res}.conv0", True)
        conv(f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", False)
        rgb(f"to_rgbs.{j}", f"synthesis.b{res}.torgb", True)
    for i, n in enumerate(noises):
        g[f"noises.noise_{i}"] = n
    return g


# ----------------------------------------------------------------------------------------------
# A test-local reader for the NVIDIA pickle (stubs only, never runs module_src).


class _Rec:
    def __init__(self, meta: dict) -> None:
        self.meta = meta
        self.state = meta["state"]

    def flat(self, prefix: str = "") -> collections.OrderedDict[str, torch.Tensor]:
        out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        for group in ("_parameters", "_buffers"):
            for k, v in self.state[group].items():
                out[prefix + k] = v
        for k, child in self.state["_modules"].items():
            out.update(child.flat(prefix + k + "."))
        return out


class _StubEasyDict(dict):
    pass


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        table = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Rec,
            ("dnnlib.util", "EasyDict"): _StubEasyDict,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
            ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch.storage", "_load_from_bytes"): lambda b: torch.load(io.BytesIO(b), weights_only=True),
            ("numpy.core.multiarray", "scalar"): ol._numpy_scalar_func(),
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in table:
            raise pickle.UnpicklingError(f"global {module}.{name} not allowed")
        return table[(module, name)]


def _stub_load(path: Path) -> dict:
    with open(path, "rb") as f:
        return _StubUnpickler(f).load()


# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny tensors: one intra-op thread is faster and immune to CPU contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ros(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("ros") / "000000.pt"
    ckpt = ol.make_rosinality_checkpoint(path, size=32, style_dim=64, n_mlp=3, seed=1,
                                         channels={4: 32, 8: 32, 16: 24, 32: 16})
    return path, ckpt


@pytest.fixture(scope="module")
def nv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("nv") / "network-snapshot-000000.pkl"
    raw = ol.make_nvidia_pickle(path, img_resolution=32, z_dim=64, w_dim=64, mapping_layers=2,
                                channel_base=512, channel_max=32, conv_clamp=256, num_fp16_res=2, seed=2)
    return path, raw


# ----------------------------------------------------------------------------------------------
# rosinality layout


def test_rosinality_state_dict_keys_shapes_order(tmp_path: Path) -> None:
    ck = ol.make_rosinality_checkpoint(tmp_path / "a.pt", size=16, style_dim=8, n_mlp=2,
                                       channels={4: 8, 8: 6, 16: 4}, kind="convert")
    expected = [
        ("style.1.weight", [8, 8]), ("style.1.bias", [8]), ("style.2.weight", [8, 8]), ("style.2.bias", [8]),
        ("input.input", [1, 8, 4, 4]),
        ("conv1.conv.weight", [1, 8, 8, 3, 3]), ("conv1.conv.modulation.weight", [8, 8]),
        ("conv1.conv.modulation.bias", [8]), ("conv1.noise.weight", [1]), ("conv1.activate.bias", [8]),
        ("to_rgb1.bias", [1, 3, 1, 1]), ("to_rgb1.conv.weight", [1, 3, 8, 1, 1]),
        ("to_rgb1.conv.modulation.weight", [8, 8]), ("to_rgb1.conv.modulation.bias", [8]),
        ("convs.0.conv.weight", [1, 6, 8, 3, 3]), ("convs.0.conv.blur.kernel", [4, 4]),
        ("convs.0.conv.modulation.weight", [8, 8]), ("convs.0.conv.modulation.bias", [8]),
        ("convs.0.noise.weight", [1]), ("convs.0.activate.bias", [6]),
        ("convs.1.conv.weight", [1, 6, 6, 3, 3]), ("convs.1.conv.modulation.weight", [6, 8]),
        ("convs.1.conv.modulation.bias", [6]), ("convs.1.noise.weight", [1]), ("convs.1.activate.bias", [6]),
        ("convs.2.conv.weight", [1, 4, 6, 3, 3]), ("convs.2.conv.blur.kernel", [4, 4]),
        ("convs.2.conv.modulation.weight", [6, 8]), ("convs.2.conv.modulation.bias", [6]),
        ("convs.2.noise.weight", [1]), ("convs.2.activate.bias", [4]),
        ("convs.3.conv.weight", [1, 4, 4, 3, 3]), ("convs.3.conv.modulation.weight", [4, 8]),
        ("convs.3.conv.modulation.bias", [4]), ("convs.3.noise.weight", [1]), ("convs.3.activate.bias", [4]),
        ("to_rgbs.0.bias", [1, 3, 1, 1]), ("to_rgbs.0.upsample.kernel", [4, 4]),
        ("to_rgbs.0.conv.weight", [1, 3, 6, 1, 1]), ("to_rgbs.0.conv.modulation.weight", [6, 8]),
        ("to_rgbs.0.conv.modulation.bias", [6]),
        ("to_rgbs.1.bias", [1, 3, 1, 1]), ("to_rgbs.1.upsample.kernel", [4, 4]),
        ("to_rgbs.1.conv.weight", [1, 3, 4, 1, 1]), ("to_rgbs.1.conv.modulation.weight", [4, 8]),
        ("to_rgbs.1.conv.modulation.bias", [4]),
        ("noises.noise_0", [1, 1, 4, 4]), ("noises.noise_1", [1, 1, 8, 8]), ("noises.noise_2", [1, 1, 8, 8]),
        ("noises.noise_3", [1, 1, 16, 16]), ("noises.noise_4", [1, 1, 16, 16]),
    ]
    assert [(k, list(v.shape)) for k, v in ck["g_ema"].items()] == expected
    assert set(ck) == {"g_ema", "latent_avg"} and ck["latent_avg"].shape == (8,)
    k = ck["g_ema"]["convs.0.conv.blur.kernel"]
    assert torch.allclose(k.sum(), torch.tensor(4.0)) and math.isclose(k[1, 1].item(), 9 / 16, rel_tol=1e-6)
    assert ol.rosinality_config(ck["g_ema"])["n_latent"] == 6


def test_rosinality_train_checkpoint_loads_weights_only(ros: tuple[Path, dict]) -> None:
    path, ckpt = ros
    with torch.serialization.safe_globals([argparse.Namespace]):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert list(loaded) == ["g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p", "latent_avg"]
    assert isinstance(loaded["args"], argparse.Namespace)
    assert (loaded["args"].size, loaded["args"].latent, loaded["args"].n_mlp) == (32, 64, 3)
    for k, v in ckpt["g_ema"].items():
        assert torch.equal(loaded["g_ema"][k], v)
    assert set(loaded["g"]) == set(loaded["g_ema"])
    assert not torch.equal(loaded["g"]["style.1.weight"], loaded["g_ema"]["style.1.weight"])
    assert loaded["g_optim"]["state"][0]["exp_avg"].shape == loaded["g"]["style.1.weight"].shape
    assert "convs.1.conv1.0.weight" in loaded["d"] and "final_linear.1.bias" in loaded["d"]
    # The Namespace really is in the stream: the default allowlist refuses it.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)


def test_rosinality_old_layouts(tmp_path: Path) -> None:
    ck = ol.make_rosinality_checkpoint(tmp_path / "old.pt", size=16, with_args=False, with_latent_avg=False,
                                       legacy_format=True)
    loaded = torch.load(tmp_path / "old.pt", map_location="cpu", weights_only=True)
    assert list(loaded) == ["g", "d", "g_ema", "g_optim", "d_optim"]
    assert torch.equal(loaded["g_ema"]["input.input"], ck["g_ema"]["input.input"])


# ----------------------------------------------------------------------------------------------
# Cross-check of the two oracles


def test_cross_check_rosinality_numbers_in_nvidia_layout(ros: tuple[Path, dict]) -> None:
    _, ckpt = ros
    g_sd, latent_avg = ckpt["g_ema"], ckpt["latent_avg"]
    raw = ros_to_nvidia(g_sd, latent_avg)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 64, generator=gen)
    ws = torch.randn(3, 8, 64, generator=gen)

    a = ol.rosinality_forward(g_sd, ws, input_is_latent=True)
    b = ol.nvidia_forward(raw, ws=ws)
    assert a.shape == (3, 3, 32, 32) and (a - b).abs().max() < ATOL

    a = ol.rosinality_forward(g_sd, z, input_is_latent=False)
    b = ol.nvidia_forward(raw, z=z)
    assert (a - b).abs().max() < ATOL

    a = ol.rosinality_forward(g_sd, z, input_is_latent=False, truncation=0.6, truncation_latent=latent_avg)
    b = ol.nvidia_forward(raw, z=z, truncation_psi=0.6)
    assert (a - b).abs().max() < ATOL
    assert (a - ol.rosinality_forward(g_sd, z, input_is_latent=False)).abs().max() > 1e-2

    # No noise: rosinality with zero noise images == NVIDIA noise_mode='none'.
    n_layers = ol.rosinality_config(g_sd)["num_layers"]
    assert n_layers == 7
    zeros = [torch.zeros_like(g_sd[f"noises.noise_{i}"]) for i in range(n_layers)]
    a = ol.rosinality_forward(g_sd, ws, input_is_latent=True, noise=zeros)
    b = ol.nvidia_forward(raw, ws=ws, noise_mode="none")
    assert (a - b).abs().max() < ATOL


def test_cross_check_nvidia_numbers_in_rosinality_layout(nv: tuple[Path, dict]) -> None:
    _, raw = nv
    g = raw["G_ema"]
    g_sd = nvidia_to_ros(g)
    w_avg = g["state_dict"]["mapping.w_avg"]
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    a = ol.nvidia_forward(raw, z=z)
    b = ol.rosinality_forward(g_sd, z, input_is_latent=False)
    assert (a - b).abs().max() < ATOL
    a = ol.nvidia_forward(raw, z=z, truncation_psi=0.5)
    b = ol.rosinality_forward(g_sd, z, input_is_latent=False, truncation=0.5, truncation_latent=w_avg)
    assert (a - b).abs().max() < ATOL
    # truncation_cutoff: only the first layers move towards w_avg.
    ws = ol.nvidia_mapping(raw, z)
    ws_cut = ws.clone()
    ws_cut[:, :3] = w_avg + 0.5 * (ws[:, :3] - w_avg)
    a = ol.nvidia_forward(raw, z=z, truncation_psi=0.5, truncation_cutoff=3)
    b = ol.rosinality_forward(g_sd, ws_cut, input_is_latent=True)
    assert (a - b).abs().max() < ATOL


# ----------------------------------------------------------------------------------------------
# NVIDIA layout


def test_nvidia_state_dict_keys_shapes_order(tmp_path: Path) -> None:
    raw = ol.make_nvidia_pickle(tmp_path / "s.pkl", img_resolution=8, z_dim=16, w_dim=8, mapping_layers=2,
                                channel_base=64, channel_max=8, augment_pipe=False)
    layer = lambda p, cin, cout, r: [  # noqa: E731
        (f"{p}.weight", [cout, cin, 3, 3]), (f"{p}.noise_strength", []), (f"{p}.bias", [cout]),
        (f"{p}.resample_filter", [4, 4]), (f"{p}.noise_const", [r, r]),
        (f"{p}.affine.weight", [cin, 8]), (f"{p}.affine.bias", [cin])]
    rgb = lambda p, cin: [(f"{p}.weight", [3, cin, 1, 1]), (f"{p}.bias", [3]),  # noqa: E731
                          (f"{p}.affine.weight", [cin, 8]), (f"{p}.affine.bias", [cin])]
    expected = ([("synthesis.b4.const", [8, 4, 4]), ("synthesis.b4.resample_filter", [4, 4])]
                + layer("synthesis.b4.conv1", 8, 8, 4) + rgb("synthesis.b4.torgb", 8)
                + [("synthesis.b8.resample_filter", [4, 4])] + layer("synthesis.b8.conv0", 8, 8, 8)
                + layer("synthesis.b8.conv1", 8, 8, 8) + rgb("synthesis.b8.torgb", 8)
                + [("mapping.w_avg", [8]), ("mapping.fc0.weight", [8, 16]), ("mapping.fc0.bias", [8]),
                   ("mapping.fc1.weight", [8, 8]), ("mapping.fc1.bias", [8])])
    assert [(k, list(v.shape)) for k, v in raw["G_ema"]["state_dict"].items()] == expected
    assert ol.nvidia_num_ws(raw) == 4


@pytest.mark.parametrize("protocol,style", [(3, "torch17"), (4, "current")])
def test_nvidia_pickle_matches_raw_description(tmp_path: Path, protocol: int, style: str) -> None:
    path = tmp_path / "snap.pkl"
    raw = ol.make_nvidia_pickle(path, img_resolution=16, channel_base=256, channel_max=16, conv_clamp=256,
                                num_fp16_res=1, protocol=protocol, module_dict_style=style)  # type: ignore[arg-type]
    data = path.read_bytes()
    assert data[:2] == bytes([0x80, protocol])
    snap = _stub_load(path)
    assert list(snap) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert type(snap["training_set_kwargs"]) is dict and snap["training_set_kwargs"]["resolution"] == 16
    for name in ("G_ema", "G", "D"):
        rec = snap[name]
        assert isinstance(rec, _Rec)
        assert rec.meta["type"] == "class" and rec.meta["version"] == 6
        assert rec.meta["class_name"] == raw[name]["class_name"] and isinstance(rec.meta["module_src"], str)
        flat = rec.flat()
        assert list(flat) == list(raw[name]["state_dict"])
        for k, v in raw[name]["state_dict"].items():
            assert torch.equal(flat[k], v), k
        assert rec.state["_init_args"] == raw[name]["init_args"]
    g = snap["G_ema"].state
    bookkeeping = [k for k in g if k.startswith("_") and k not in ("_init_args", "_init_kwargs")]
    if style == "torch17":
        assert ["training"] + bookkeeping == ["training"] + list(ol._TORCH17_MODULE_KEYS)
    assert g["training"] is False and isinstance(g["_non_persistent_buffers_set"], set)
    kw = g["_init_kwargs"]
    assert list(kw) == ["z_dim", "w_dim", "mapping_kwargs", "synthesis_kwargs", "c_dim", "img_resolution",
                        "img_channels"]
    assert type(kw["mapping_kwargs"]) is _StubEasyDict and kw["mapping_kwargs"] == {"num_layers": 2}
    assert kw["synthesis_kwargs"] == dict(channel_base=256, channel_max=16, num_fp16_res=1, conv_clamp=256)
    assert (g["z_dim"], g["w_dim"], g["num_ws"], g["img_resolution"]) == (64, 64, 6, 16)
    syn = g["_modules"]["synthesis"].state
    assert [syn["_modules"][b].state["use_fp16"] for b in ("b4", "b8", "b16")] == [False, False, True]
    fc0 = g["_modules"]["mapping"].state["_modules"]["fc0"].state
    assert type(fc0["weight_gain"]) is np.float64 and math.isclose(fc0["weight_gain"], 0.01 / 8)
    assert fc0["bias_gain"] == 0.01 and fc0["activation"] == "lrelu"
    assert isinstance(fc0["_parameters"]["weight"], torch.nn.Parameter)
    assert not fc0["_parameters"]["weight"].requires_grad
    l0 = syn["_modules"]["b8"].state["_modules"]["conv0"].state
    assert l0["_init_kwargs"] == dict(w_dim=64, resolution=8, up=2, resample_filter=[1, 3, 3, 1], conv_clamp=256,
                                      channels_last=False)
    assert l0["conv_clamp"] == 256 and l0["up"] == 2
    expected_globals = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"), ("dnnlib.util", "EasyDict"),
        ("collections", "OrderedDict"), ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_tensor_v2"), ("torch.storage", "_load_from_bytes"),
        ("numpy.core.multiarray", "scalar"), ("numpy", "dtype"),
    }
    if protocol < 4:
        expected_globals.add(("builtins", "set"))  # protocol 4+ has an EMPTY_SET opcode
    assert set(ol.pickle_globals(data)) == expected_globals


class _ModuleUnpickler(_StubUnpickler):
    """Rebuilds each persistent record as a bare nn.Module from its __dict__ (no class code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            def rebuild(meta: dict) -> torch.nn.Module:
                obj = torch.nn.Module.__new__(torch.nn.Module)
                obj.__setstate__(dict(meta["state"]))
                return obj
            return rebuild
        return super().find_class(module, name)


@pytest.mark.parametrize("style", ["torch17", "current"])
def test_nvidia_pickle_state_is_a_real_module_dict(tmp_path: Path, style: str) -> None:
    path = tmp_path / "m.pkl"
    raw = ol.make_nvidia_pickle(path, img_resolution=16, channel_base=256, channel_max=16,
                                module_dict_style=style)  # type: ignore[arg-type]
    with open(path, "rb") as f:
        snap = _ModuleUnpickler(f).load()
    g = snap["G_ema"]
    sd = g.state_dict()
    assert list(sd) == list(raw["G_ema"]["state_dict"])
    assert all(torch.equal(sd[k], v) for k, v in raw["G_ema"]["state_dict"].items())
    assert g.synthesis.b8.conv0.weight.shape == (16, 16, 3, 3) and g.num_ws == 6
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    assert list(snap["D"].state_dict()) == list(raw["D"]["state_dict"])


def test_nvidia_legacy_kwargs(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pkl"
    raw = ol.make_nvidia_pickle(path, img_resolution=16, channel_base=256, channel_max=16, conv_clamp=None,
                                legacy_kwargs=True, augment_pipe=False)
    g = _stub_load(path)["G_ema"]
    kw = g.state["_init_kwargs"]
    assert list(kw) == ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                        "synthesis_kwargs"]
    assert kw["mapping_kwargs"]["lr_multiplier"] == 0.01 and kw["synthesis_kwargs"]["architecture"] == "skip"
    layer = g.state["_modules"]["synthesis"].state["_modules"]["b8"].state["_modules"]["conv1"].state
    assert layer["_init_kwargs"]["use_noise"] is True and layer["_init_kwargs"]["activation"] == "lrelu"
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(4))
    a = ol.nvidia_forward(raw, z=z)
    b = ol.rosinality_forward(nvidia_to_ros(raw["G_ema"]), z, input_is_latent=False)
    assert (a - b).abs().max() < ATOL


def test_nvidia_conditional_and_clamp(tmp_path: Path) -> None:
    raw = ol.make_nvidia_pickle(tmp_path / "c.pkl", img_resolution=16, c_dim=3, channel_base=256,
                                channel_max=16, conv_clamp=0.2, augment_pipe=False)
    sd = raw["G_ema"]["state_dict"]
    assert sd["mapping.embed.weight"].shape == (64, 3) and sd["mapping.fc0.weight"].shape == (64, 128)
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(5))
    c = torch.eye(3)[:2]
    img = ol.nvidia_forward(raw, z=z, c=c)
    assert img.abs().max() <= 0.2 * 3 + 1e-6  # each torgb output clamped; upsampling keeps the bound
    unclamped = dict(raw["G_ema"], init_kwargs=dict(raw["G_ema"]["init_kwargs"],
                                                    synthesis_kwargs=dict(conv_clamp=None)))
    assert (ol.nvidia_forward(unclamped, z=z, c=c) - img).abs().max() > 1e-2
    assert (ol.nvidia_forward(raw, z=z, c=torch.eye(3)[1:]) - img).abs().max() > 1e-3


def test_output_ranges_and_truncation(ros: tuple[Path, dict], nv: tuple[Path, dict]) -> None:
    _, ckpt = ros
    _, raw = nv
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(7))
    for img in (ol.rosinality_forward(ckpt["g_ema"], z, input_is_latent=False), ol.nvidia_forward(raw, z=z)):
        assert img.dtype == torch.float32 and img.shape == (4, 3, 32, 32) and torch.isfinite(img).all()
        assert 0.05 < img.std().item() < 3.0 and img.abs().max().item() < 10.0
    # psi = 0: every sample is the w_avg image.
    img = ol.nvidia_forward(raw, z=z, truncation_psi=0.0)
    assert (img - img[:1]).abs().max() < 1e-5
    # Constant noise matters, and G differs from G_ema.
    assert (ol.nvidia_forward(raw, z=z, noise_mode="none") - ol.nvidia_forward(raw, z=z)).abs().max() > 1e-2
    assert (ol.nvidia_forward(raw["G"], z=z) - ol.nvidia_forward(raw, z=z)).abs().max() > 1e-2


# ----------------------------------------------------------------------------------------------
# Hostile pickles


def test_code_exec_pickle_runs_code_when_loaded_naively(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pkl"
    ol.make_code_exec_pickle(path, marker)
    assert ("builtins", "exec") in ol.pickle_globals(path)
    assert not marker.exists()
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))", str(path)],
                   check=True, cwd=tmp_path, timeout=60)
    assert marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        _stub_load(path)
    ol.make_code_exec_pickle(path, marker, via="system")
    assert ("posix", "system") in ol.pickle_globals(path) or ("nt", "system") in ol.pickle_globals(path)


_FAKE_PERSISTENCE = '''
import types, uuid
def _reconstruct_persistent_obj(meta):
    # What the official torch_utils.persistence does first: run the embedded module source.
    module = types.ModuleType("_imported_module_" + uuid.uuid4().hex)
    exec(meta["module_src"], module.__dict__)
    return meta
'''


def test_malicious_persistence_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "module_src_ran.txt"
    path = tmp_path / "network-snapshot-000000.pkl"
    raw = ol.make_malicious_pickle(path, marker, img_resolution=16, channel_base=256, channel_max=16)
    # A data-only reader gets the right tensors and runs nothing.
    snap = _stub_load(path)
    assert str(marker) in snap["G_ema"].meta["module_src"]
    for k, v in raw["G_ema"]["state_dict"].items():
        assert torch.equal(snap["G_ema"].flat()[k], v)
    assert not marker.exists()
    # Official semantics (persistence execs module_src) create the marker.
    fake = tmp_path / "official"
    (fake / "torch_utils").mkdir(parents=True)
    (fake / "dnnlib").mkdir()
    (fake / "torch_utils" / "__init__.py").write_text("")
    (fake / "torch_utils" / "persistence.py").write_text(textwrap.dedent(_FAKE_PERSISTENCE))
    (fake / "dnnlib" / "__init__.py").write_text("")
    (fake / "dnnlib" / "util.py").write_text("class EasyDict(dict):\n    pass\n")
    code = "import sys, pickle, warnings; warnings.simplefilter('ignore'); pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=fake, timeout=120,
                   env={"PYTHONPATH": str(fake), "PATH": "/usr/bin:/bin"})
    assert marker.exists()
