"""Hostile input files (issue 17): a tiny file must not cost gigabytes, and every refusal is one line.

Masks are refused from their header (size) before any pixel is decoded; ``.npz`` files (inversions,
directions) are read member by member, each checked from its ``.npy`` header, unknown members
skipped undecompressed; damaged files and refused torch files are one clear line. The commands
run as a user runs them, in one subprocess whose peak memory (``ru_maxrss``) and time per command
are measured.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbrush_core.images import read_image
from ganbrush_core.masks import MaskError, read_mask
from ganbrush_core.npz import MAX_MEMBERS, Member, NpzFileError, read_npz
from ganbrush_core.safe_pickle import UnsafePickleError, torch_load_tensors
from ganbrush_core.training import RunFolder, TrainError
from inversion.result import Inversion
from manipulate.directions import save_directions, sefa
from stylegan_ops import save_generator
from stylegan_ops.checkpoints import generator_hash, load_generator

MB = 1 << 20
JUNK_ELEMENTS = 1 << 27  # float64: 1 GiB once decompressed, ~1 MB in the file


# -- building hostile files without ever holding them in memory -------------------------------------
def png_1bit(path: Path, width: int, height: int) -> Path:
    """A black 1-bit PNG of any size, compressed row batch by row batch (a few KB per Mpx)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte, then the packed pixels
    comp = zlib.compressobj(6)
    full, rest = divmod(height, 256)
    body = [comp.compress(row * 256) for _ in range(full)] + [comp.compress(row * rest), comp.flush()]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b""))
    return path


def add_member(path: Path, name: str, shape: tuple[int, ...], dtype: str = "<f8",
               data_bytes: int | None = None) -> None:
    """Append ``name.npy`` to the zip at ``path``: a header declaring ``shape`` and ``dtype``, then
    ``data_bytes`` zero bytes (default: all the header declares), deflated as they are written."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize if data_bytes is None else data_bytes
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
            zeros = bytes(min(nbytes, 32 * MB))
            for start in range(0, nbytes, len(zeros)):
                f.write(zeros[: min(len(zeros), nbytes - start)])


def inversion_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def with_meta(arrays: dict[str, np.ndarray], meta: object, drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    out = {k: v for k, v in arrays.items() if k not in drop}
    out["meta"] = np.array(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_generator) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    G = load_generator(save_generator(make_generator(seed=0), root / "g.safetensors"))
    directions = save_directions(root / "dirs.npz", sefa(G, num=2, scale_samples=200), G)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))).detach()  # [N, num_ws, w]
    with torch.no_grad():
        recon = G.synthesis(ws)
    good = Inversion(ws=ws, noises=[m.clone() for m in G.noise_maps()], reconstruction=recon, target=recon,
                     method="w+", steps=1, generator_hash=generator_hash(G)).save(root / "inv.npz")
    arrays = inversion_arrays(good)
    meta = json.loads(str(arrays["meta"]))
    out = {"root": root, "generator": root / "g.safetensors", "directions": directions, "inversion": good}
    # The file: a valid inversion plus a 1 GiB (decompressed) member nobody asked for.
    out["junk"] = root / "junk.npz"
    np.savez(out["junk"], **arrays)
    add_member(out["junk"], "junk", (JUNK_ELEMENTS,))
    # A known member whose header declares ~36 GiB (with a few bytes of data).
    out["huge_ws"] = root / "huge_ws.npz"
    np.savez(out["huge_ws"], **{k: v for k, v in arrays.items() if k != "ws"})
    add_member(out["huge_ws"], "ws", (1 << 20, 18, 512), "<f4", data_bytes=64)
    for name, variant in {"meta_list": with_meta(arrays, [meta]),
                          "no_num_noises": with_meta(arrays, {k: v for k, v in meta.items() if k != "num_noises"}),
                          "no_ws": with_meta(arrays, meta, drop=("ws",)),
                          "meta_not_json": {**arrays, "meta": np.array("{not json")}}.items():
        out[name] = root / f"{name}.npz"
        np.savez(out[name], **variant)
    data = directions.read_bytes()
    out["truncated_dirs"] = root / "truncated_dirs.npz"
    out["truncated_dirs"].write_bytes(data[: len(data) // 2])
    out["mask_9000"] = png_1bit(root / "mask_9000.png", 9000, 9000)
    out["mask_20000"] = png_1bit(root / "mask_20000.png", 20000, 20000)
    rng = np.random.default_rng(0)
    out["photo"] = root / "photo.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(out["photo"])
    return out


def test_the_hostile_files_are_small(files):
    assert files["mask_9000"].stat().st_size < 100_000 and files["mask_20000"].stat().st_size < 200_000
    assert files["junk"].stat().st_size < 2 * MB  # yet 1 GiB decompressed


# -- masks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, match", [("mask_9000", r"9000x9000 = 81\.0 Mpx is over the limit of 64\.0 Mpx"),
                                         ("mask_20000", r"header claims 400\.0 Mpx.*decompression bomb")])
def test_masks_are_refused_from_the_header(files, name, match):
    tracemalloc.start()
    try:
        with pytest.raises(MaskError, match=match) as e:
            read_mask(files[name])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * MB and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="over the limit|decompression bomb"):
        read_image(files[name])  # inpaint's image and edge map go through the same check


def test_mask_limit_is_a_parameter_and_small_masks_of_every_mode_still_read(tmp_path):
    a = np.zeros((6, 8), np.uint8)
    a[2:4, 3:7] = 255
    expected = torch.from_numpy(a >= 128).float()[None, None]
    Image.fromarray(a).convert("1").save(tmp_path / "one_bit.png")
    rgba = np.dstack([a, a, a, np.full_like(a, 255)])
    rgba[0, 0] = (255, 255, 255, 0)  # white but transparent: not a hole
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([a, np.full_like(a, 255)]), "LA").save(tmp_path / "la.png")
    for name in ("one_bit.png", "rgba.png", "la.png"):
        assert torch.equal(read_mask(tmp_path / name), expected), name
    with pytest.raises(MaskError, match="over the limit of 0.0 Mpx"):
        read_mask(tmp_path / "one_bit.png", max_pixels=40)


def test_colour_masks_are_converted_block_by_block_like_the_whole(monkeypatch, tmp_path):
    import ganbrush_core.masks as masks

    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (37, 23, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    whole = masks.read_mask(tmp_path / "m.png")
    monkeypatch.setattr(masks, "_BLOCK_PIXELS", 50)  # two rows a block
    assert torch.equal(masks.read_mask(tmp_path / "m.png"), whole)
    f = rgba.astype(np.float64) / 255
    reference = (f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114) * f[..., 3] >= 0.5
    assert torch.equal(whole[0, 0], torch.from_numpy(reference).float())


# -- the bounded .npz reader ---------------------------------------------------------------------------
SPEC = {"a": Member("f", ndim=2, required=True), r"b_\d+": Member("iu"), "s": Member("U", ndim=0)}


def test_read_npz_reads_what_np_load_reads(tmp_path):
    arrays = {"a": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)), "b_0": np.arange(5),
              "b_1": np.array([], np.uint8), "s": np.array("é text"), "other": np.ones(3)}
    np.savez(tmp_path / "x.npz", **arrays)
    np.savez_compressed(tmp_path / "z.npz", **arrays)
    for name in ("x.npz", "z.npz"):
        got = read_npz(tmp_path / name, SPEC, MB)
        assert sorted(got) == ["a", "b_0", "b_1", "s"]  # "other" is not expected: skipped
        for k, v in got.items():
            assert v.dtype == arrays[k].dtype and np.array_equal(v, arrays[k])


def test_unknown_members_are_never_decompressed(files):
    tracemalloc.start()
    try:
        got = read_npz(files["junk"], {"ws": Member("f", ndim=3)}, 64 * MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(got) == ["ws"] and peak < 16 * MB


@pytest.mark.parametrize("arrays, spec, match", [
    ({"a": np.zeros((2, 2), np.float32)}, {"a": Member("f", max_bytes=8)}, r"'a' declares .* over its limit"),
    ({"a": np.zeros((64, 64))}, SPEC, "more than the limit of 15.6 KiB"),
    ({"a": np.zeros(3)}, SPEC, r"'a' has shape \(3,\), expected 2 dimensions"),
    ({"a": np.zeros((2, 2), np.int64)}, SPEC, "'a' has dtype int64, expected kind f"),
    ({"a": np.array([{}, None], dtype=object).reshape(1, 2)}, SPEC, "'a' has dtype object"),
    ({"a": np.zeros((1, 1), [("x", "<f4")])}, SPEC, "'a' has dtype"),
    ({"b_0": np.zeros(2, np.int8)}, SPEC, "it lacks 'a'"),
])
def test_read_npz_refusals_are_one_line(tmp_path, arrays, spec, match):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(NpzFileError, match=match) as e:
        read_npz(tmp_path / "x.npz", spec, 16_000, what="thing", hint="make it again")
    assert str(e.value).startswith(str(tmp_path / "x.npz")) and str(e.value).endswith("; make it again")
    assert "\n" not in str(e.value)


def test_read_npz_refuses_lying_truncated_and_crowded_files(tmp_path, files):
    declared = r"'ws' declares \(1048576, 18, 512\) float32 \(36 GiB\), over its limit of 1 MiB"
    with pytest.raises(NpzFileError, match=declared):
        read_npz(files["huge_ws"], {"ws": Member("f", max_bytes=MB)}, 64 * MB)
    lying = tmp_path / "lying.npz"
    np.savez(lying, other=np.zeros(1))
    add_member(lying, "a", (1000, 1000), "<f4", data_bytes=10)
    with pytest.raises(NpzFileError, match="does not hold the .* array its header declares"):
        read_npz(lying, SPEC, 64 * MB)
    np.savez(tmp_path / "ok.npz", a=np.random.default_rng(0).random((50, 50)))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(NpzFileError, match="not a readable thing"):
        read_npz(tmp_path / "cut.npz", SPEC, MB, what="thing")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(100))
    with pytest.raises(NpzFileError, match="not a readable"):
        read_npz(tmp_path / "garbage.npz", SPEC, MB)
    crowded = tmp_path / "crowded.npz"
    with zipfile.ZipFile(crowded, "w") as zf:
        for i in range(MAX_MEMBERS + 1):
            zf.writestr(f"{i}.npy", b"")
    with pytest.raises(NpzFileError, match=f"lists {MAX_MEMBERS + 1} members"):
        read_npz(crowded, SPEC, MB)
    with pytest.raises(NpzFileError, match="no such"):
        read_npz(tmp_path / "missing.npz", SPEC, MB)


# -- torch files: ganbrush's own refusal, never torch's advice -----------------------------------------
class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refused_torch_files_get_ganbrush_s_one_line(tmp_path):
    from inpainting.checkpoints import CheckpointError
    from inpainting.checkpoints import load_generator as load_edge_generator

    path = tmp_path / "evil.pth"
    torch.save({"generator": {}, "x": _Evil()}, path)
    with pytest.raises(UnsafePickleError, match=r"asks to load the Python object (builtins\.)?print,") as e:
        torch_load_tensors(path)
    assert isinstance(e.value, pickle.UnpicklingError)
    with pytest.raises(CheckpointError, match="evil.pth: refused") as e:
        load_edge_generator(path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(path.read_bytes())
    with pytest.raises(TrainError, match="refused") as t:
        RunFolder(run).read_checkpoint()
    for message in (str(e.value), str(t.value)):
        assert "weights_only" not in message and "\n" not in message


# -- the commands, as a user runs them -------------------------------------------------------------------
RUNNER = r"""
import contextlib, io, json, resource, sys, time, traceback
import ganbrush_cli, ganbrush_pipeline  # and what the commands import lazily: the baseline includes it
import inpainting.checkpoints, inpainting.inpaint, manipulate.edit_cli, manipulate.local_edit, tqdm.auto

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

report = {"baseline_mb": peak_mb(), "runs": []}
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = ganbrush_cli.main(argv)
    except BaseException as e:
        rc = "uncaught " + type(e).__name__
        err.write(traceback.format_exc())
    report["runs"].append({"argv": argv, "rc": rc, "stderr": err.getvalue(), "seconds": time.perf_counter() - start,
                           "peak_mb": peak_mb()})
print(json.dumps(report))
"""


def test_commands_refuse_hostile_files_in_one_line_fast_and_in_bounded_memory(files):
    """``ru_maxrss`` is a high-water mark: the process's final peak bounds every command's peak, and
    the peak after each command shows which one would have grown it."""
    f = {k: str(v) for k, v in files.items()}
    root = files["root"]
    edit = ["edit", "--generator", f["generator"], "--directions", f["directions"], "--direction", "sefa0",
            "--strength", "1"]
    cases = [  # (argv, expected exit code, the one line must contain)
        (["pipeline", f["photo"], "--out", str(root / "p1.png"), "--mask", f["mask_9000"]], 2, "over the limit"),
        (["pipeline", f["photo"], "--out", str(root / "p2.png"), "--mask", f["mask_20000"]], 2, "decompression bomb"),
        (["inpaint", f["photo"], f["mask_9000"], "--method", "biharmonic", "--out", str(root / "i.png")], 2,
         "over the limit"),
        ([*edit, f["inversion"], "--mask", f["mask_20000"], "--out", str(root / "e1.png")], 2, "decompression bomb"),
        ([*edit, f["junk"], "--out", str(root / "e2.png")], 0, ""),  # junk skipped, the edit works
        ([*edit, f["huge_ws"], "--out", str(root / "e3.png")], 2, "limit of"),
        ([*edit[:4], f["truncated_dirs"], *edit[5:], f["inversion"], "--out", str(root / "e4.png")], 2,
         "not a readable ganbrush directions file"),
        ([*edit, f["meta_list"], "--out", str(root / "e5.png")], 2, "metadata is a list"),
        ([*edit, f["no_num_noises"], "--out", str(root / "e6.png")], 2, "metadata lacks 'num_noises'"),
        ([*edit, f["no_ws"], "--out", str(root / "e7.png")], 2, "it lacks ws"),
        ([*edit, f["meta_not_json"], "--out", str(root / "e8.png")], 2, "not JSON"),
    ]
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([argv for argv, _, _ in cases])],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for (argv, rc, needle), run in zip(cases, report["runs"]):
        label = f"{argv[0]} {Path(argv[-1]).name}: {run['stderr'][-800:]}"
        assert run["rc"] == rc, label
        if rc:
            lines = run["stderr"].strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("ganbrush: error: ") and needle in lines[0], label
            assert "weights_only" not in lines[0]
        assert run["seconds"] < 2.0, label
    growth = [round(run["peak_mb"] - report["baseline_mb"]) for run in report["runs"]]
    print("peak MB above the baseline after each command:", growth, "seconds:",
          [round(run["seconds"], 2) for run in report["runs"]])
    assert growth[-1] < 500, f"peak memory above the baseline after each command (MB): {growth}"


def test_the_cli_itself_prints_one_line_and_exits_2(files):
    proc = subprocess.run([sys.executable, "-m", "ganbrush_cli", "inpaint", str(files["photo"]),
                           str(files["mask_20000"]), "--method", "biharmonic", "--out", str(files["root"] / "x.png")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "decompression bomb" in proc.stderr
