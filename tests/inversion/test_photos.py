"""load_photo / save_photo: every odd input a user may hand in becomes upright uint8 RGB, and
a decompression bomb is refused from its header alone."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ganbrush_core.paths import data_root
from inversion.photos import MAX_PIXELS, PhotoError, load_photo, save_photo

PHOTOS = data_root() / "photos"
needs_photos = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent

EXIF_ORIENTATION = 0x0112


def _rgb_gradient(w: int = 40, h: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], axis=2).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims ``width`` x ``height`` 8-bit RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_rgb_file_round_trips_exactly(tmp_path):
    a = _rgb_gradient()
    path = save_photo(a, tmp_path / "a.png")
    b = load_photo(path)
    assert b.dtype == np.uint8 and b.shape == a.shape and b.flags.c_contiguous and b.flags.writeable
    assert np.array_equal(a, b)
    assert np.array_equal(load_photo(path.read_bytes()), a)
    with path.open("rb") as f:
        assert np.array_equal(load_photo(f), a)


def test_grayscale_and_one_bit_become_three_equal_channels(tmp_path):
    g = _rgb_gradient()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_photo(tmp_path / "g.png")
    assert out.shape == (*g.shape, 3) and all(np.array_equal(out[..., c], g) for c in range(3))
    Image.fromarray(g > 127).save(tmp_path / "b.png")
    bits = load_photo(tmp_path / "b.png")
    assert set(np.unique(bits)) == {0, 255} and np.array_equal(bits[..., 0] == 255, g > 127)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255  # left half opaque red-ish, right half fully transparent
    rgba[:, 4:6, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_photo(tmp_path / "a.png")
    assert out.shape == (8, 8, 3)
    assert (out[:, :4] == [200, 0, 0]).all()
    assert (out[:, 6:] == 255).all()
    expected_half = np.round(np.array([200, 0, 0]) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(out[:, 4:6].astype(int) - expected_half).max() <= 1


def test_palette_with_and_without_transparency(tmp_path):
    rgb = _rgb_gradient()
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(load_photo(tmp_path / "p.png"), np.array(pal.convert("RGB")))
    idx = np.array(pal)
    pal.info["transparency"] = int(idx[0, 0])
    pal.save(tmp_path / "pt.png", transparency=int(idx[0, 0]))
    out = load_photo(tmp_path / "pt.png")
    assert (out[idx == idx[0, 0]] == 255).all()
    assert np.array_equal(out[idx != idx[0, 0]], np.array(pal.convert("RGB"))[idx != idx[0, 0]])


def test_sixteen_bit_grayscale_keeps_the_whole_range(tmp_path):
    v = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    im = Image.fromarray(v)
    assert im.mode == "I;16"
    im.save(tmp_path / "16.png")
    out = load_photo(tmp_path / "16.png")
    assert out.shape == (3, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(load_photo(v), out)  # an array in hand is read the same way


@pytest.mark.parametrize(("orientation", "red_side"), [(6, "top"), (8, "bottom"), (1, "left")])
def test_exif_orientation_is_applied(tmp_path, orientation, red_side):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = [255, 0, 0]  # stored: left half red
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    im.save(tmp_path / "o.png", exif=exif)
    out = load_photo(tmp_path / "o.png")
    red = out[..., 0] > 128
    if red_side == "left":
        assert out.shape[:2] == (20, 40) and red[:, :20].all() and not red[:, 20:].any()
    else:  # orientations 6 and 8 are quarter turns: the photo is displayed 20 wide, 40 high
        assert out.shape[:2] == (40, 20)
        top, bottom = red[:20].all() and not red[20:].any(), red[20:].all() and not red[:20].any()
        assert top if red_side == "top" else bottom


@needs_photos
def test_exif_rotated_real_photo_loads_upright(tmp_path):
    upright = load_photo(PHOTOS / "laos.jpg")[200:520, 0:300]
    stored = np.rot90(upright, k=1)  # what a camera held sideways writes, with orientation 6
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "r.png", exif=exif)
    assert np.array_equal(load_photo(tmp_path / "r.png"), upright)


def test_tiny_photo_loads(tmp_path):
    a = _rgb_gradient(16, 16)
    Image.fromarray(a).save(tmp_path / "t.png")
    assert np.array_equal(load_photo(tmp_path / "t.png"), a)
    Image.fromarray(a[:1, :1]).save(tmp_path / "1.png")
    assert load_photo(tmp_path / "1.png").shape == (1, 1, 3)


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_claiming(100_000, 100_000))
    assert bomb.stat().st_size < 200
    with pytest.raises(PhotoError, match="bomb") as e:
        load_photo(bomb)
    assert "\n" not in str(e.value)
    # Above our limit but below Pillow's own: our check, naming the size and what to do.
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_claiming(10_000, 9_000))
    with pytest.raises(PhotoError, match=r"90\.0 Mpx .*downscale it"):
        load_photo(big)
    with pytest.raises(PhotoError, match="over the limit"):
        load_photo(np.zeros((10, 11, 3), np.uint8), max_pixels=100)
    assert MAX_PIXELS < 100_000 * 100_000


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(PhotoError, match="no such file"):
        load_photo(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(PhotoError, match="not a readable image"):
        load_photo(tmp_path / "text.jpg")
    Image.fromarray(_rgb_gradient(64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhotoError, match="not a readable image"):
        load_photo(tmp_path / "cut.jpg")
    with pytest.raises(PhotoError, match="expected an HxW"):
        load_photo(np.zeros((4, 4, 2), np.uint8))


def test_float_and_bool_arrays(tmp_path):
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = load_photo(f)
    assert out[0, 0].tolist() == [0, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    assert load_photo(np.eye(3, dtype=bool))[0, 0].tolist() == [255, 255, 255]


def test_save_refuses_to_overwrite_and_writes_atomically(tmp_path):
    a = _rgb_gradient()
    path = save_photo(a, tmp_path / "sub" / "x.png")
    with pytest.raises(FileExistsError, match="force"):
        save_photo(a[::-1], path)
    assert np.array_equal(load_photo(path), a)
    save_photo(a[::-1].copy(), path, force=True)
    assert np.array_equal(load_photo(path), a[::-1])
    with pytest.raises(PhotoError, match="suffix"):
        save_photo(a, tmp_path / "x.unknown")
    with pytest.raises(PhotoError, match="uint8"):
        save_photo(a.astype(np.float32), tmp_path / "y.png")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]  # no leftover temporary files
