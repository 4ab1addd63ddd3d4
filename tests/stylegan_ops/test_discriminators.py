"""Discriminator files: both kinds rebuild from the file alone; other files are refused in one line."""

import pytest
import torch

from ganbrush_core.weights import WeightsFileError
from stylegan_ops.discriminators import (
    DiscKind,
    build_discriminator,
    discriminator_kind,
    load_discriminator,
    save_discriminator,
)
from stylegan_ops.networks import channels_for
from stylegan_ops.projected import ProjectedConfig


@pytest.mark.parametrize("kind", list(DiscKind))
def test_discriminator_file_round_trip(kind, tmp_path):
    torch.manual_seed(0)
    projected = ProjectedConfig(img_resolution=32, head_channels=4, proj_channels=(4, 4, 8, 8))
    D = build_discriminator(kind, 32, channels_for(32, 128, 16), projected).eval()
    assert discriminator_kind(D) is kind
    path = save_discriminator(D, tmp_path / "d.safetensors", dtype=None)
    loaded = load_discriminator(path)
    assert discriminator_kind(loaded) is kind and loaded.training
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), D(x), rtol=0, atol=0)
    half = load_discriminator(save_discriminator(D, tmp_path / "half.safetensors"))
    assert {v.dtype for v in half.state_dict().values() if v.is_floating_point()} == {torch.float32}


def test_other_files_are_refused(tmp_path, make_generator):
    from stylegan_ops.checkpoints import save_generator

    path = save_generator(make_generator(), tmp_path / "g.safetensors")
    with pytest.raises(WeightsFileError, match="discriminator"):
        load_discriminator(path)
    with pytest.raises(ValueError, match="32 px"):
        build_discriminator("projected", 64, projected=ProjectedConfig(img_resolution=32))
