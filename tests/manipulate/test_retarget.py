"""``manipulate.retarget``: sizes, the per-photo cache, native-resolution rendering (tiny nets)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganbrush_core.images import read_image, to_uint8
from ganbrush_core.metrics import sharpness
from manipulate import retarget
from manipulate.ingan import InGANConfig
from manipulate.ingan_train import GENERATOR_FILE, InGANTrainConfig
from manipulate.retarget import (
    INFO_FILE,
    RetargetError,
    cache_root,
    check_size,
    fit,
    parse_size,
    parse_sizes,
    render,
    strip,
    working_image,
)

TINY = InGANTrainConfig(net=InGANConfig(g_channels=8, g_blocks=1, d_channels=8), lr_g=2e-3, lr_d=2e-3)


@pytest.fixture(scope="module")
def photo(photos_dir):
    """laos.jpg at 240x160 (a real photo, small enough for seconds)."""
    image = read_image(photos_dir / "laos.jpg")
    return F.interpolate(image, size=(160, 240), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def model(photo, tmp_path_factory):
    return fit(photo, steps=40, working_size=48, cfg=TINY, cache=tmp_path_factory.mktemp("cache"))


def test_sizes_are_parsed_and_silly_ones_refused_in_one_line():
    assert parse_size("1800x800") == (1800, 800) and parse_size(" 64X32 ") == (64, 32)
    assert parse_sizes("30x20, 40x20") == [(30, 20), (40, 20)]
    for bad in ("1800", "axb", "-3x4", "3x4x5", ""):
        with pytest.raises(RetargetError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    assert check_size((1200, 800), (1800, 800)) == (1800, 800)
    for bad, what in (((0, 800), "width"), ((1200, 3201), "height"), ((299, 800), "width"), ((4801, 800), "width")):
        with pytest.raises(ValueError, match=what) as info:
            check_size((1200, 800), bad)
        assert "\n" not in str(info.value)


def test_the_photos_own_size_returns_it_bit_identical_without_training(photo, tmp_path):
    out = retarget(photo, (240, 160), cache=tmp_path)
    assert torch.equal(out, photo) and not any(tmp_path.iterdir())


def test_working_image_fits_the_longest_side():
    assert working_image(torch.zeros(1, 3, 160, 240), 48).shape[-2:] == (32, 48)
    assert working_image(torch.zeros(1, 3, 30, 40), 128).shape[-2:] == (30, 40)  # never enlarged


def test_model_is_cached_as_safetensors_and_json_and_reused(photo, model, tmp_path_factory):
    folder = model.folder
    assert model.info["cached"] is False and model.info["steps"] == 40
    names = {p.name for p in folder.iterdir()}
    assert {GENERATOR_FILE, INFO_FILE, "log.jsonl", "losses.png"} <= names
    assert not [n for n in names if n.endswith((".pt", ".pkl", ".pickle"))]
    assert json.loads((folder / INFO_FILE).read_text())["working_shape"] == [32, 48]
    again = fit(photo, steps=40, working_size=48, cfg=TINY, cache=folder.parent)
    assert again.info["cached"] is True and again.folder == folder
    with torch.no_grad():
        torch.testing.assert_close(again.working((32, 72)), model.working((32, 72)))
    # Another step count (or photo) is another model.
    other = photo.clone()
    other[..., 0, 0] = 1.0
    assert fit(other, steps=2, working_size=48, cfg=TINY, cache=folder.parent).folder != folder


def test_default_cache_is_under_ganbrush_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GANBRUSH_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "retarget"


@pytest.mark.parametrize("size", [(360, 160), (168, 160), (240, 208), (120, 240)])
def test_output_is_at_the_size_asked_and_native_detail_is_added(photo, model, size):
    out = render(model, photo, size)
    assert out.shape == (1, 3, size[1], size[0]) and out.abs().max() <= 1
    plain = render(model, photo, size, detail=False)
    # The photo's own detail, carried where the mapping holds: sharper than G's output upsampled.
    assert sharpness(to_uint8(out)[0]) > 1.5 * sharpness(to_uint8(plain)[0])
    # Colours and layout follow the photo (a stretch of it is the crude reference).
    stretched = F.interpolate(photo, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    assert (out - stretched).abs().mean() < 0.25


def test_retarget_takes_one_size_or_several(photo, model):
    outs = retarget(photo, [(360, 160), (240, 160)], steps=40, working_size=48, cfg=TINY, cache=model.folder.parent)
    assert [o.shape[-1] for o in outs] == [360, 240] and torch.equal(outs[1], photo)
    with pytest.raises(RetargetError, match="photo must be"):
        retarget(np.zeros((10, 10, 3)), (10, 10))
    assert strip(outs, gap=8).shape == (1, 3, 160, 360 + 8 + 240)
