"""safetensors + JSON config: one writer (atomic, 0644, refuses unless forced) and one reader."""

import stat

import pytest
import torch

from ganbrush_core.weights import WeightsFileError, is_safetensors, read_metadata, read_safetensors, save_safetensors


def test_round_trip_keeps_config_metadata_and_dtype(tmp_path):
    tensors = {"w": torch.randn(3, 4), "steps": torch.tensor([5], dtype=torch.int64)}
    path = save_safetensors(tmp_path / "m.safetensors", tensors, format="ganbrush.test", version="1",
                            config={"width": 4, "names": ["a"]}, metadata={"note": "x"}, dtype=torch.float16)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and is_safetensors(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    f = read_safetensors(path, "ganbrush.test")
    assert f.config == {"width": 4, "names": ["a"]} and f.metadata["note"] == "x" and f.metadata["version"] == "1"
    assert f.tensors["w"].dtype == torch.float16 and f.tensors["steps"].dtype == torch.int64  # ints are not cast
    torch.testing.assert_close(f.tensors["w"].float(), tensors["w"], atol=2e-3, rtol=1e-3)
    assert read_metadata(path)["format"] == "ganbrush.test"


def test_refusals_and_damaged_files(tmp_path):
    path = save_safetensors(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, format="a", version="1", config={})
    with pytest.raises(FileExistsError, match="--force"):
        save_safetensors(path, {"w": torch.ones(2)}, format="a", version="1", config={}, force=False)
    assert torch.equal(read_safetensors(path, "a").tensors["w"], torch.zeros(2))
    with pytest.raises(WeightsFileError, match=r"\.safetensors"):
        save_safetensors(tmp_path / "m.pt", {}, format="a", version="1", config={})
    with pytest.raises(WeightsFileError, match=r"not an EdgeConnect generator \(format='a'\)"):
        read_safetensors(path, "b", what="an EdgeConnect generator")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:20])
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        read_safetensors(cut, "a")
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        read_safetensors(tmp_path / "missing.safetensors", "a")
    assert not is_safetensors(cut.with_name("x.bin")) if cut.with_name("x.bin").write_bytes(b"\x80\x02") else False
