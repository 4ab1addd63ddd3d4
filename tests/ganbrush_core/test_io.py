"""Atomic writes: mode 0644, no temporary file left behind on success or failure, one refuse-overwrite wording."""

import os
import stat

import numpy as np
import pytest

from ganbrush_core.io import FILE_MODE, atomic_path, atomic_write, refuse_overwrite, write_bytes, write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def restrictive_umask():
    # mkstemp creates 0600 whatever the umask; a strict umask must not leak into the result either.
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_files_are_0644_and_alone(tmp_path, restrictive_umask):
    assert FILE_MODE == 0o644
    a = write_bytes(tmp_path / "a.bin", b"\x00\x01")
    b = write_text(tmp_path / "sub" / "b.txt", "é\n")  # parent folders are created
    with atomic_path(tmp_path / "c.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path  # np.savez would append .npz otherwise
        np.savez(tmp, x=np.arange(3))
    assert a.read_bytes() == b"\x00\x01" and b.read_text(encoding="utf-8") == "é\n"
    assert np.array_equal(np.load(tmp_path / "c.npz")["x"], np.arange(3))
    assert [mode(p) for p in (a, b, tmp_path / "c.npz")] == [0o644] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.npz", "sub"]


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
