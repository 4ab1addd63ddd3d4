"""Inversion files that are damaged, forged or padded: one clear error, bounded memory (issue 17)."""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

from inversion.result import Inversion, InversionFileError
from stylegan_ops.checkpoints import generator_hash


@pytest.fixture(scope="module")
def saved(small_generator, tmp_path_factory):
    G = small_generator
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))).detach()  # [N, num_ws, w]
    with torch.no_grad():
        recon = G.synthesis(ws)
    inv = Inversion(ws=ws, noises=[m.clone() for m in G.noise_maps()], reconstruction=recon, target=None,
                    method="w+", steps=2, generator_hash=generator_hash(G),
                    history=[{"phase": "w+", "mse": 0.5}, {"phase": "w+", "mse": 0.25, "lpips": 0.1}],
                    final_losses={"mse": 0.25}, seconds=0.0)
    path = inv.save(tmp_path_factory.mktemp("result") / "inv.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return inv, path, arrays, json.loads(str(arrays["meta"]))


def test_round_trip_keeps_everything(saved, small_generator):
    inv, path, _, _ = saved
    back = Inversion.load(path, small_generator)
    assert torch.equal(back.ws, inv.ws) and back.target is None and back.seconds == 0.0
    assert back.history == inv.history and back.final_losses == inv.final_losses
    assert all(torch.equal(a, b) for a, b in zip(back.noises, inv.noises))


def test_unknown_members_are_skipped_unread(saved, tmp_path):
    inv, path, _, _ = saved
    padded = tmp_path / "padded.npz"
    padded.write_bytes(path.read_bytes())
    with zipfile.ZipFile(padded, "a", compression=zipfile.ZIP_DEFLATED) as zf:  # 64 MB of zeros, ~60 KB here
        zf.writestr("junk.npy", b"\x93NUMPY" + bytes(64 << 20))
    tracemalloc.start()
    try:
        back = Inversion.load(padded)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert torch.equal(back.ws, inv.ws) and peak < 8 << 20


def _variant(arrays: dict, meta: object = None, drop: tuple[str, ...] = (), **extra: np.ndarray) -> dict:
    out = {k: v for k, v in arrays.items() if k not in drop}
    if meta is not None:
        out["meta"] = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    return {**out, **extra}


def test_damaged_files_are_one_line(saved, tmp_path):
    _, path, arrays, meta = saved
    cases = {
        "list": (_variant(arrays, [meta]), "metadata is a list"),
        "no_num_noises": (_variant(arrays, {k: v for k, v in meta.items() if k != "num_noises"}),
                          "metadata lacks 'num_noises'"),
        "bad_steps": (_variant(arrays, {**meta, "steps": "many"}), "metadata has a bad 'steps'"),
        "huge_num_noises": (_variant(arrays, {**meta, "num_noises": 10**12}), "bad 'num_noises'"),
        "no_ws": (_variant(arrays, drop=("ws",)), "it lacks ws"),
        "no_noise": (_variant(arrays, drop=("noise_0",)), "it lacks noise_0"),
        "no_history": (_variant(arrays, drop=("history_mse",)), "it lacks history_mse"),
        "not_json": (_variant(arrays, "{oops"), "not JSON"),
        "no_meta": (_variant(arrays, drop=("meta",)), "no metadata"),
        "mismatch": (_variant(arrays, reconstruction=arrays["reconstruction"][:1]), "do not match"),
        "ws_2d": (_variant(arrays, ws=arrays["ws"][0]), "'ws' has shape"),
        "ws_int": (_variant(arrays, ws=arrays["ws"].astype(np.int32)), "'ws' has dtype int32"),
        "other_format": (_variant(arrays, {**meta, "format": "ganbrush.directions"}), "not a ganbrush inversion"),
    }
    for name, (variant, match) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **variant)
        with pytest.raises(InversionFileError, match=match) as e:
            Inversion.load(tmp_path / f"{name}.npz")
        assert "\n" not in str(e.value), name
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InversionFileError, match="not a readable inversion file"):
        Inversion.load(tmp_path / "cut.npz")


def test_the_size_bound_is_checked_before_reading(saved):
    _, path, _, _ = saved
    with pytest.raises(InversionFileError, match="more than the limit"):
        Inversion.load(path, max_bytes=1000)
