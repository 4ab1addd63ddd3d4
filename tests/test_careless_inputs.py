"""Careless inputs (issue 17, parts 7-10): unchecked numbers, masks that mean nothing, output
paths checked late, leftovers after a failure, and the photo-size message.

Every refusal must come before any slow work (no inversion starts), say on one line what to do,
exit non-zero from the CLI, and leave no file or folder behind. A few CLI cases run the real
``ganbrush`` command in a subprocess (``cli``: its time is compared with the interpreter's own
start-up, ~4 s of imports on two busy cores); the others call the same entry point in-process
(``ganbrush_cli.main``, ``run``), and the API cases call the functions the CLIs and the app use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganbrush_pipeline as pipe
from ganbrush_core.checks import check_float, check_int
from ganbrush_core.io import check_output, write_all
from ganbrush_core.paths import data_root
from inversion import Inversion, InversionFileError, PhotoError, load_photo
from inversion.project import MAX_STEPS, ProjectionSettings, invert, projection_settings
from manipulate.edit import MAX_STRENGTH, Edit, check_strength, parse_edit
from stylegan_ops import load_generator
from stylegan_ops.checkpoints import generator_hash

PHOTO = data_root() / "photos" / "laos.jpg"
GANBRUSH = [sys.executable, "-m", "ganbrush_cli"]
REPO = Path(__file__).resolve().parents[1]
#: A refusal, past the start-up of the interpreter and imports (the refusal itself takes milliseconds).
REFUSAL_SECONDS = 2.0
#: How much the ~4 s start-up of a subprocess (torch and friends imported) varies between runs on a
#: busy two-core machine: 3.5 s one run, 7 s the next.
STARTUP_NOISE = 3.0


def _subprocess(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("GANBRUSH_DEBUG", None)
    started = time.perf_counter()
    out = subprocess.run([*GANBRUSH, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    return out, time.perf_counter() - started


@pytest.fixture(scope="module")
def startup(tmp_path_factory) -> float:
    """Seconds the ``ganbrush`` command takes to start and print its help (imports included), the
    fastest of two runs: the floor under any subprocess refusal on this machine right now."""
    folder = tmp_path_factory.mktemp("startup")
    return min(_subprocess(["--help"], folder)[1] for _ in range(2))


@pytest.fixture
def cli(startup: float):
    """Run ``ganbrush ARGS`` in a subprocess in ``cwd``; returns (result, seconds of work): the time
    beyond start-up, less :data:`STARTUP_NOISE`. A refusal past that is work done before checking
    (an inversion takes 30 s and more); the in-process cases time refusals exactly."""
    def run_cli(*args: object, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
        out, seconds = _subprocess([str(a) for a in args], cwd)
        return out, max(0.0, seconds - startup - STARTUP_NOISE)
    return run_cli


def run(*args: object, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``ganbrush ARGS`` in this process (the same entry point: parser, one-line errors, exit code)."""
    import contextlib
    import io

    import ganbrush_cli

    err, out = io.StringIO(), io.StringIO()
    here = Path.cwd()
    started = time.perf_counter()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = ganbrush_cli.main([str(a) for a in args])
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(here)
    seconds = time.perf_counter() - started
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue()), seconds


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_refused(out: subprocess.CompletedProcess, seconds: float, *needles: str) -> None:
    assert out.returncode != 0, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbrush: error: "), out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert seconds < REFUSAL_SECONDS, f"refused only after {seconds:.1f} s of work: {lines[0]}"


@pytest.fixture(scope="module")
def G():
    return load_generator("default")


@pytest.fixture(scope="module")
def inversion_file(G, tmp_path_factory) -> Path:
    """A valid inversion of the default generator (latents sampled, no optimisation)."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
        noises = [m.clone() for m in G.noise_maps()]
        recon = G.synthesis(ws, noises=noises)
    inv = Inversion(ws=ws, noises=noises, reconstruction=recon, target=None, method="w+", steps=0,
                    generator_hash=generator_hash(G))
    return inv.save(tmp_path_factory.mktemp("inv") / "face.npz")


@pytest.fixture(scope="module")
def photo_size() -> tuple[int, int]:
    if not PHOTO.is_file():
        pytest.skip(f"shared photo {PHOTO} not found")
    with Image.open(PHOTO) as im:
        return im.size


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty folder to run the CLI in; the tests check nothing new appears in it."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# -- 7. numbers -------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["invert", PHOTO, "--out", "run", "--steps", "1000000000"], ["steps (--steps)", "1..10000"]),
    (["invert", PHOTO, "--out", "run", "--method", "pti", "--pti-steps", "-3"], ["--pti-steps", "got -3"]),
    (["pipeline", PHOTO, "--out", "o.png", "--edit", "smile=1e30"], ["smile=1e30", "[-10, 10]"]),
    (["pipeline", PHOTO, "--out", "o.png", "--edit", "smile=nan"], ["smile=nan", "finite"]),
    (["pipeline", PHOTO, "--out", "o.png", "--steps", "1000000000"], ["--steps"]),
    (["pipeline", PHOTO, "--out", "o.png", "--feather", "nan"], ["feather"]),
], ids=["invert-steps", "invert-pti-steps", "pipeline-strength-huge", "pipeline-strength-nan", "pipeline-steps",
        "pipeline-feather"])
def test_cli_refuses_numbers_out_of_range(args, needles, work, photo_size, cli):
    out, seconds = (cli if args[0] == "invert" else run)(*args, cwd=work)  # the invert cases in a real process
    assert_refused(out, seconds, *needles)
    assert tree(work) == set()


@pytest.mark.parametrize("strength", ["nan", "1e30", "-inf"])
def test_edit_cli_refuses_strength(strength, inversion_file, work, cli):
    runner = cli if strength == "nan" else run
    out, seconds = runner("edit", inversion_file, "--direction", "smile", f"--strength={strength}", "--out", "x.png",
                          cwd=work)
    assert_refused(out, seconds, "edit strength", f"[-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]")
    assert tree(work) == set()


def test_strength_is_checked_in_one_place():
    for bad in (float("nan"), float("inf"), 1e30, -MAX_STRENGTH - 0.1):
        with pytest.raises(ValueError, match="finite number in the range"):
            Edit("smile", bad)
        with pytest.raises(ValueError, match="bad edit"):
            parse_edit(f"smile={bad}")
    assert Edit("smile", MAX_STRENGTH).strength == MAX_STRENGTH
    assert parse_edit("smile=-2@0-3") == Edit("smile", -2.0, (0, 4))
    assert check_strength(np.float32(1.5)) == 1.5


def test_invert_refuses_settings_before_any_work(G):
    target = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
    cases = {"steps": (dict(steps=10**9), "1..10000"), "pti_steps": (dict(pti_steps=-3), "got -3"),
             "lr": (dict(lr=float("nan")), "lr"), "lr0": (dict(lr=0.0), "lr"), "pti_lr": (dict(pti_lr=5.0), "pti_lr"),
             "float steps": (dict(steps=2.5), "whole number"), "ramp": (dict(lr_rampup_length=0.0), "rampup")}
    for name, (overrides, needle) in cases.items():
        started = time.perf_counter()
        with pytest.raises(ValueError, match=needle):
            invert(G, target, method="pti", progress=lambda *a: pytest.fail("the inversion started"), **overrides)
        assert time.perf_counter() - started < REFUSAL_SECONDS, name
    with pytest.raises(ValueError, match="NaN or infinite"):
        invert(G, torch.full_like(target, float("nan")), steps=1)
    assert projection_settings(MAX_STEPS, pti_steps=0).steps == MAX_STEPS
    assert ProjectionSettings().validate().lr is None


def test_inversion_with_nan_or_huge_latents_is_refused(inversion_file, tmp_path):
    arrays = dict(np.load(inversion_file, allow_pickle=False))
    for name, value in (("nan", np.nan), ("inf", np.inf), ("huge", 1e30)):
        ws = arrays["ws"].copy()
        ws[0, 0, 0] = value
        broken = tmp_path / f"{name}.npz"
        np.savez(broken, **{**arrays, "ws": ws})
        with pytest.raises(InversionFileError, match="latents"):
            Inversion.load(broken)
    inv = Inversion.load(inversion_file)
    with pytest.raises(InversionFileError, match="NaN"):
        Inversion(ws=torch.full_like(inv.ws, float("nan")), noises=inv.noises, reconstruction=inv.reconstruction,
                  target=None, method="w+", steps=1, generator_hash=inv.generator_hash)


def test_edit_cli_refuses_a_nan_inversion(inversion_file, work):
    arrays = dict(np.load(inversion_file, allow_pickle=False))
    np.savez(work / "nan.npz", **{**arrays, "ws": np.full_like(arrays["ws"], np.nan)})
    out, seconds = run("edit", "nan.npz", "--direction", "smile", "--strength", "1", "--out", "x.png", cwd=work)
    assert_refused(out, seconds, "NaN")
    assert tree(work) == {"nan.npz"}


def test_number_checks_name_the_range():
    assert check_int("n", np.int64(3), 1, 5) == 3 and check_int("n", 4.0, 1, 5) == 4
    for bad in (True, 0, 6, 2.5, "3", None):
        with pytest.raises(ValueError, match=r"n must be a whole number in the range 1\.\.5"):
            check_int("n", bad, 1, 5)
    assert check_float("x", 0.5, 0, 1, lo_open=True) == 0.5
    for bad in (0.0, float("nan"), float("inf"), "0.5", None, True, 2):
        with pytest.raises(ValueError, match=r"x must be a finite number in the range \(0, 1\]"):
            check_float("x", bad, 0, 1, lo_open=True)


# -- 8. masks -----------------------------------------------------------------------------------
def _mask_png(folder: Path, size: tuple[int, int], value: int) -> Path:
    path = folder / f"mask{value}.png"
    Image.new("L", size, value).save(path)
    return path


@pytest.mark.parametrize("value, needle", [(255, "covers 100% of the face"), (0, "marks nothing")],
                         ids=["all-white", "all-black"])
def test_pipeline_cli_refuses_a_meaningless_mask(value, needle, tmp_path, work, photo_size, cli):
    mask = _mask_png(tmp_path, photo_size, value)
    out, seconds = (cli if value else run)("pipeline", PHOTO, "--mask", mask, "--out", "o.png", cwd=work)
    assert_refused(out, seconds, needle)
    assert "regenerated" not in out.stdout
    assert tree(work) == set()


def test_pipeline_api_refuses_masks_before_inverting(G):
    photo = load_photo(PHOTO) if PHOTO.is_file() else pytest.skip("shared photo not found")
    r = G.img_resolution
    nearly_full = np.ones((r, r), bool)
    nearly_full[: r // 20] = False  # 95 % of the aligned face
    for mask, needle in ((np.ones(photo.shape[:2], bool), "covers 100%"), (np.zeros((r, r), bool), "marks nothing"),
                         (nearly_full, "covers 95%")):
        started = time.perf_counter()
        with pytest.raises(pipe.PipelineError, match=needle):
            pipe.run_pipeline(photo, pipe.PipelineOptions(mask=mask, steps=5), G,
                              progress=lambda *a: pytest.fail("the inversion started"))
        assert time.perf_counter() - started < REFUSAL_SECONDS + 3  # face detection on a 0.6 Mpx photo included


def test_step_functions_refuse_the_same_masks(G):
    photo = load_photo(PHOTO) if PHOTO.is_file() else pytest.skip("shared photo not found")
    aligned = pipe.align(photo, pipe.find_faces(photo), 0, G)
    face = aligned.image
    r = aligned.res
    ok = np.zeros((r, r), bool)
    ok[r // 2:, r // 4: 3 * r // 4] = True
    pipe.check_face_mask(ok, photo.shape, aligned)  # a plausible region passes
    render = torch.zeros(1, 3, r, r)
    for mask, needle in ((np.zeros((r, r), bool), "marks nothing"), (np.ones((r, r), bool), "covers 100%")):
        with pytest.raises(pipe.PipelineError, match=needle):
            pipe.inpaint_face(face, mask)
        with pytest.raises(pipe.PipelineError, match=needle):
            pipe.face_edges(face, mask)
        with pytest.raises(pipe.PipelineError, match=needle):
            pipe.render_native(photo, aligned, render, render, mask)
    # A photo-sized mask far from the face: nothing of the face to regenerate.
    corner = np.zeros(photo.shape[:2], bool)
    corner[:5, :5] = True
    with pytest.raises(pipe.PipelineError, match="marks nothing"):
        pipe.check_face_mask(corner, photo.shape, aligned)


# -- 9. outputs checked first, all or none ----------------------------------------------------------
def test_invert_into_an_existing_file_fails_at_once(work, cli):
    (work / "taken").write_text("mine")
    out, seconds = cli("invert", PHOTO, "--out", "taken", cwd=work)
    assert_refused(out, seconds, "taken is a file, not a folder")
    assert tree(work) == {"taken"} and (work / "taken").read_text() == "mine"


def test_invert_refuses_existing_outputs_without_force(work):
    (work / "run").mkdir()
    (work / "run" / "pasted.png").write_bytes(b"old")
    out, seconds = run("invert", PHOTO, "--out", "run", cwd=work)
    assert_refused(out, seconds, "pasted.png exists", "--force")
    assert tree(work) == {"run", "run/pasted.png"}


@pytest.mark.parametrize("args, needles", [
    (["pipeline", PHOTO, "--out", "new/o.xyz"], ["unknown file suffix '.xyz'", ".png"]),
    (["pipeline", PHOTO, "--out", "o.png", "--save-inversion", "new/inv.txt"], ["--save-inversion", ".npz"]),
    (["pipeline", PHOTO, "--out", "o.png", "--save-inversion", "blocker/inv.npz"], ["blocker is a file"]),
    (["pipeline", PHOTO, "--out", "o.psd"], ["'.psd'"]),  # Pillow reads PSD but cannot write it
    (["inpaint", PHOTO, PHOTO, "--out", "o.png", "--save-edges", "new/e.xyz"], ["--save-edges"]),
], ids=["pipeline-suffix", "pipeline-save-inversion-suffix", "pipeline-save-inversion-parent", "pipeline-psd",
        "inpaint-save-edges"])
def test_output_paths_are_checked_before_any_work(args, needles, work, cli):
    (work / "blocker").write_text("a file where a folder would go")
    out, seconds = (cli if args[2:4] == ["--out", "new/o.xyz"] else run)(*args, cwd=work)
    assert_refused(out, seconds, *needles)
    assert tree(work) == {"blocker"}


def test_edit_to_an_unknown_suffix_leaves_no_folder(inversion_file, work):
    out, seconds = run("edit", inversion_file, "--direction", "smile", "--strength", "1", "--out", "newdir/x.xyz",
                       cwd=work)
    assert_refused(out, seconds, "'.xyz'")
    assert tree(work) == set()


def test_edit_writes_both_outputs_into_a_new_folder(G, inversion_file, tmp_path, monkeypatch, capsys):
    import ganbrush_cli

    monkeypatch.chdir(tmp_path)
    direction = next(iter(pipe.directions_for(G)))
    argv = ["edit", str(inversion_file), "--direction", direction, "--strength", "1", "--out", "a/b/x.png",
            "--save-latent", "a/b/x.npz"]
    assert ganbrush_cli.main(argv) == 0
    assert tree(tmp_path) == {"a", "a/b", "a/b/x.png", "a/b/x.npz"}
    Inversion.load(tmp_path / "a/b/x.npz", G)
    # Both exist now: refused as a whole, nothing rewritten.
    before = (tmp_path / "a/b/x.png").read_bytes()
    assert ganbrush_cli.main(argv) == 2
    assert "exist" in capsys.readouterr().err and (tmp_path / "a/b/x.png").read_bytes() == before


def test_write_all_writes_everything_or_nothing(tmp_path):
    targets = [tmp_path / "new" / "deep" / "a.png", tmp_path / "b.npz"]
    with pytest.raises(RuntimeError, match="boom"), write_all(targets) as tmp:
        assert [t.suffix for t in tmp] == [".png", ".npz"] and all(t.exists() for t in tmp)
        tmp[0].write_bytes(b"a")
        raise RuntimeError("boom")  # e.g. the second writer fails
    assert tree(tmp_path) == set()  # no target, no temporary, no folder
    with write_all(targets) as tmp:
        for t, data in zip(tmp, (b"a", b"b")):
            t.write_bytes(data)
    assert targets[0].read_bytes() == b"a" and targets[1].read_bytes() == b"b"
    assert tree(tmp_path) == {"new", "new/deep", "new/deep/a.png", "b.npz"}
    with pytest.raises(FileExistsError, match="--force"), write_all(targets):
        pass
    with pytest.raises(ValueError, match="two different outputs"), write_all([tmp_path / "c.png"] * 2, force=True):
        pass


def test_write_all_undoes_a_failed_rename(tmp_path, monkeypatch):
    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    targets = [old, tmp_path / "sub" / "new.png", tmp_path / "last.png"]
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        if Path(dst) == targets[2]:
            raise OSError("disk gone")
        calls["n"] += 1
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk gone"), write_all(targets, force=True) as tmp:
        for t in tmp:
            t.write_bytes(b"new")
    monkeypatch.undo()
    assert calls["n"] > 0 and old.read_bytes() == b"old"
    assert tree(tmp_path) == {"old.png"}


def test_check_output_says_what_is_wrong(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="unknown file suffix"):
        check_output(tmp_path / "a.xyz", suffixes={".png"})
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_output(tmp_path, force=True)
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_output(tmp_path / "file" / "deeper" / "a.png")
    with pytest.raises(FileExistsError):
        check_output(tmp_path / "file")
    assert check_output(tmp_path / "new" / "a.png") == tmp_path / "new" / "a.png"
    assert tree(tmp_path) == {"file"}


# -- 10. the photo-size message ----------------------------------------------------------------------
def test_photo_too_large_says_what_the_user_can_do():
    with pytest.raises(PhotoError) as err:
        load_photo(np.zeros((3000, 4000, 3), np.uint8), max_pixels=1_000_000)
    message = str(err.value)
    assert "max_pixels" not in message and "downscale it to at most 1154x866 px" in message
