"""Atomic writes: the umask's mode (0644 under 022), no temporary file left behind on success or
failure, one refuse-overwrite wording."""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from ganbrush_core.io import (
    BASE_FILE_MODE,
    atomic_path,
    atomic_write,
    current_umask,
    file_mode,
    refuse_overwrite,
    remove_temporaries,
    write_bytes,
    write_text,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    # mkstemp creates 0600 whatever the umask; the result must follow the umask as open() does.
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_files_take_the_umask_mode_and_are_alone(tmp_path, umask):
    assert current_umask() == umask and BASE_FILE_MODE == 0o666
    expected = {0o022: 0o644, 0o077: 0o600, 0o002: 0o664}[umask]
    assert file_mode() == expected
    a = write_bytes(tmp_path / "a.bin", b"\x00\x01")
    b = write_text(tmp_path / "sub" / "b.txt", "é\n")  # parent folders are created
    with atomic_path(tmp_path / "c.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path  # np.savez would append .npz otherwise
        np.savez(tmp, x=np.arange(3))
    with open(tmp_path / "plain", "w"):
        pass
    assert a.read_bytes() == b"\x00\x01" and b.read_text(encoding="utf-8") == "é\n"
    assert np.array_equal(np.load(tmp_path / "c.npz")["x"], np.arange(3))
    assert [mode(p) for p in (a, b, tmp_path / "c.npz")] == [mode(tmp_path / "plain")] * 3 == [expected] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.npz", "plain", "sub"]
    assert os.umask(umask) == umask  # reading it left it alone


CLI_OUTPUTS = r"""
import os, sys, stat
from pathlib import Path
import numpy as np, torch
from PIL import Image
import ganbrush_cli
from inversion.result import Inversion
from stylegan_ops import save_generator
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator, GeneratorConfig, channels_for
root = Path(sys.argv[1])
torch.manual_seed(0)
G = Generator(GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2,
                              channels=channels_for(16, 64, 16))).eval()
save_generator(G, root / "g.safetensors")
ws = G.mapping(torch.randn(1, 16)).detach()
with torch.no_grad():
    rec = G.synthesis(ws)
Inversion(ws=ws, noises=[m.clone() for m in G.noise_maps()], reconstruction=rec, target=rec, method="w+", steps=1,
          generator_hash=generator_hash(G)).save(root / "inv.npz")
img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
Image.fromarray(img).save(root / "img.png")
m = np.zeros((16, 16), np.uint8); m[4:10, 4:10] = 255
Image.fromarray(m).save(root / "mask.png")
g = str(root / "g.safetensors")
runs = [["convert", g, str(root / "conv.safetensors")],
        ["sample", "--generator", g, "--out", str(root / "sample.png"), "--num", "1"],
        ["directions", "sefa", "--generator", g, "--num", "2", "--samples", "200", "--out", str(root / "dirs")],
        ["edit", str(root / "inv.npz"), "--generator", g, "--directions", str(root / "dirs" / "sefa.npz"),
         "--direction", "sefa0", "--strength", "1", "--out", str(root / "edit.png"),
         "--save-latent", str(root / "edit.npz")],
        ["inpaint", str(root / "img.png"), str(root / "mask.png"), "--method", "biharmonic",
         "--out", str(root / "inpaint.png")]]
for argv in runs:
    rc = ganbrush_cli.main(argv)
    assert rc == 0, (argv, rc)
print(" ".join(f"{p.relative_to(root)}={stat.S_IMODE(p.stat().st_mode):o}" for p in sorted(root.rglob("*"))
               if p.is_file()))
"""


def test_cli_outputs_follow_the_umask(tmp_path):
    """Each writing command (convert, sample, directions, edit --out/--save-latent, inpaint --out)
    as a user runs it: outputs of a process started under umask 022 are 0644, under 027 0640.
    ``invert`` and ``pipeline`` (which need a face detector) write through the same
    ``save_pil`` / ``Inversion.save``; test_invert_cli checks their modes."""
    for umask, expected in ((0o022, "644"), (0o027, "640")):
        root = tmp_path / f"u{umask:o}"
        root.mkdir()
        proc = subprocess.run([sys.executable, "-c", CLI_OUTPUTS, str(root)], capture_output=True, text=True,
                              timeout=300, preexec_fn=lambda u=umask: os.umask(u),
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        modes = dict(item.split("=") for item in proc.stdout.strip().splitlines()[-1].split())  # after the commands
        outputs = {k: v for k, v in modes.items() if k not in ("g.safetensors", "inv.npz", "img.png", "mask.png")}
        assert {"conv.safetensors", "sample.png", "edit.png", "edit.npz", "inpaint.png"} <= set(outputs)
        assert any(k.startswith("dirs/") for k in outputs)
        assert set(outputs.values()) == {expected}, outputs


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target, "w") as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.bin"):
            raise RuntimeError("killed before the rename")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


_EXIT_MID_WRITE = """
import os, sys
from ganbrush_core.io import atomic_path, atomic_write, write_all
folder = sys.argv[1]
with atomic_path(folder + "/checkpoint.pt") as tmp:
    tmp.write_bytes(b"half")
    with atomic_write(folder + "/log.jsonl", "w") as f:
        with write_all([folder + "/samples.png"], force=True):
            os._exit(0)  # a kill: no cleanup runs
"""


def test_remove_temporaries_clears_what_a_killed_writer_left_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    subprocess.run([sys.executable, "-c", _EXIT_MID_WRITE, str(run)], check=True)
    left = sorted(p.name for p in run.iterdir())
    assert len(left) == 3 and all(name.startswith(".") and ".tmp" in name for name in left), left
    (run / ".tmpAb3dE9").write_bytes(b"")  # the name safetensors' own temporary file takes
    keep = [".gitignore", ".hidden.tmp", "notes.tmp", "checkpoint.pt"]
    for name in keep:
        (run / name).write_text("mine")
    (run / ".tmpFolder").mkdir()
    removed = remove_temporaries(run)
    assert sorted(p.name for p in removed) == sorted(left + [".tmpAb3dE9"])
    assert sorted(p.name for p in run.iterdir()) == sorted(keep + [".tmpFolder"])
    assert remove_temporaries(tmp_path / "missing") == []


def test_refuse_overwrite_has_one_wording_and_names_every_existing_path(tmp_path):
    a, b, c = (write_text(tmp_path / n, "x") for n in ("a", "b", "c"))
    with pytest.raises(FileExistsError, match=r"a exists; pass --force \(force=True\) to overwrite$"):
        refuse_overwrite(a)
    with pytest.raises(FileExistsError, match=r"/a, .*/b exist; pass --force"):
        refuse_overwrite([a, b, tmp_path / "missing"])
    refuse_overwrite([a, b, c], force=True)
    refuse_overwrite(tmp_path / "missing")
    with pytest.raises(FileExistsError, match="--force"):
        write_text(c, "y", force=False)
    assert c.read_text() == "x"
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "d", "a"):
            pass
