"""Native-resolution edit transfer (manipulate.transfer) on synthetic renders and photos.

The aligned faces are built directly (no dlib): an ``AlignedFace`` only needs its quad and
``res`` here. Renders are uint8 ``[r, r, 3]`` (``compute_transfer`` takes those as well as
[-1, 1] tensors); the photo is a texture the test controls, so where an edit must and must not
show is known exactly.
"""

from __future__ import annotations

import time
import tracemalloc

import cv2
import numpy as np
import pytest
import torch

from inversion.align import AlignedFace, Face, paste_back, paste_mask
from manipulate import transfer as T
from manipulate.transfer import (
    EditTransfer,
    Rendering,
    TransferOptions,
    apply_transfer,
    band_limit,
    compute_transfer,
    estimate_flow,
    gate_flow,
    transfer_edit,
)

R = 64  # the generator's resolution in these tests


# -- helpers ------------------------------------------------------------------------------------------
def make_aligned(centre: tuple[float, float], side: float, res: int = R, angle: float = 0.0) -> AlignedFace:
    """An AlignedFace whose square has ``side`` photo px, centred at ``centre``, turned by ``angle``
    (radians, clockwise on screen: y points down). Quad order: TL, BL, BR, TR (outer edges)."""
    c = np.asarray(centre, np.float64)
    ex = np.array([np.cos(angle), np.sin(angle)]) * side  # aligned x axis, whole side
    ey = np.array([-np.sin(angle), np.cos(angle)]) * side  # aligned y axis
    tl = c - ex / 2 - ey / 2
    quad = np.stack([tl, tl + ey, tl + ex + ey, tl + ex])
    face = Face(box=(float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()),
                     float(quad[:, 1].max())), landmarks=np.zeros((68, 2)), score=1.0)
    return AlignedFace(image=np.zeros((res, res, 3), np.uint8), quad=quad, res=res, framing="ganbrush", face=face)


def texture(size: int, seed: int, cells: int = 24, lo: float = 40, hi: float = 215) -> np.ndarray:
    """A smooth random colour texture, float32 [size, size, 3] in [lo, hi]."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((cells, cells, 3)).astype(np.float32)
    big = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    big = (big - big.min()) / (big.max() - big.min())
    return lo + (hi - lo) * big


def u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def random_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def to_transfer_px(aligned: AlignedFace, r: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each photo pixel's position in the transfer grid (``r`` px over the square, pixel centres)."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = aligned.from_photo
    u = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    v = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    k = r / aligned.res
    return (u + 0.5) * k - 0.5, (v + 0.5) * k - 0.5


def may_change(aligned: AlignedFace, transfer: EditTransfer, shape: tuple[int, ...]) -> np.ndarray:
    """bool [H, W]: photo pixels the transfer may touch: inside the square and within the bicubic
    support (2 px) of a non-zero mask value, plus one pixel for rounding."""
    r = transfer.res
    support = cv2.dilate((transfer.mask > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    u, v = to_transfer_px(aligned, r, shape)
    iu, iv = np.clip(np.round(u), 0, r - 1).astype(int), np.clip(np.round(v), 0, r - 1).astype(int)
    return support[iv, iu] & (paste_mask(shape, aligned) > 0)


# -- identity -----------------------------------------------------------------------------------------
IDENTITY_CASES = [  # (photo h, w), square centre, side, angle
    ((240, 320), (160, 120), 150.0, 0.0),
    ((101, 77), (40.3, 51.7), 63.0, 0.2),  # odd sizes, not a whole number of px
    ((333, 517), (250.5, 160.0), 301.0, -0.4),
    ((200, 150), (10.0, 180.0), 120.0, 0.1),  # the square leaves the photo on two sides
    ((64, 64), (32.0, 32.0), 64.0, 0.0),  # one photo px per aligned px
    ((1201, 901), (450.0, 600.0), 777.0, 0.05),  # several strips
]


@pytest.mark.parametrize("shape, centre, side, angle", IDENTITY_CASES)
def test_identical_renders_return_the_photo_bit_identical(shape, centre, side, angle):
    photo = random_photo(*shape, seed=1)
    aligned = make_aligned(centre, side, angle=angle)
    rec = u8(texture(R, seed=2))
    transfer = compute_transfer(rec, rec.copy())
    assert transfer.identity and transfer.res == R
    assert not transfer.flow.any() and not transfer.residual.any() and not transfer.mask.any()
    out = apply_transfer(photo, aligned, transfer)
    assert out is not photo and out.dtype == np.uint8
    np.testing.assert_array_equal(out, photo)
    for rendering in (Rendering.NATIVE, Rendering.RESIDUAL, "native"):
        np.testing.assert_array_equal(transfer_edit(photo, aligned, rec, rec, rendering), photo)


def test_identical_tensor_renders_are_an_identity():
    torch.manual_seed(0)
    t = torch.rand(1, 3, R, R) * 2 - 1
    transfer = compute_transfer(t, t.clone())
    assert transfer.identity
    photo = random_photo(90, 130, seed=3)
    np.testing.assert_array_equal(transfer_edit(photo, make_aligned((65, 45), 80), t, t[0]), photo)


def test_square_outside_the_photo_changes_nothing():
    photo = random_photo(100, 100, seed=4)
    rec = u8(texture(R, seed=5))
    edited = rec.copy()
    edited[20:40, 20:40] = 255
    transfer = compute_transfer(rec, edited)
    assert not transfer.identity
    np.testing.assert_array_equal(apply_transfer(photo, make_aligned((400, 400), 120), transfer), photo)


# -- synthetic edits ------------------------------------------------------------------------------------
def disc(r: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:r, 0:r]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def blob_edit(shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a dark Gaussian blob, and the same with the blob moved by
    ``shift``. (On a flat background the flow is undetermined: DIS spreads the blob's motion over
    the whole square, so the change mask would cover it all.)"""
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float32)
    base = texture(R, seed=3, cells=16)

    def blob(cx, cy):
        return base - 100 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 4.0**2))[..., None]

    return u8(blob(30, 34)), u8(blob(30 + shift[0], 34 + shift[1]))


def colour_edit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rec = texture(R, seed=6)
    edited = rec.copy()
    d = disc(R, (40, 24), 7)
    edited[d, 0] += 40  # redder inside the disc
    return u8(rec), u8(edited), d


EDIT_CASES = [  # photo (h, w), square centre, side, angle
    ((300, 400), (200.0, 150.0), 220.0, 0.0),
    ((257, 311), (130.5, 140.2), 181.0, 0.3),
    ((180, 240), (60.0, 150.0), 170.0, -0.2),  # partly outside the photo
]


@pytest.mark.parametrize("make_edit", ["blob", "colour"])
@pytest.mark.parametrize("shape, centre, side, angle", EDIT_CASES)
def test_pixels_the_change_mask_does_not_reach_stay_bit_identical(make_edit, shape, centre, side, angle):
    if make_edit == "blob":
        rec, edited = blob_edit((4, -2))
    else:
        rec, edited, _ = colour_edit()
    photo = random_photo(*shape, seed=7)
    aligned = make_aligned(centre, side, angle=angle)
    transfer = compute_transfer(rec, edited)
    assert not transfer.identity
    assert 0.0 < transfer.mask.mean() < 0.6, "the change mask should cover the edit, not the whole square"
    assert transfer.mask.min() == 0.0 and transfer.mask.max() == 1.0
    out = apply_transfer(photo, aligned, transfer)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = (out != photo).any(-1)
    allowed = may_change(aligned, transfer, photo.shape)
    outside_square = paste_mask(photo.shape, aligned) == 0
    assert changed.any()
    np.testing.assert_array_equal(out[~allowed], photo[~allowed])
    np.testing.assert_array_equal(out[outside_square], photo[outside_square])
    # Most of the square is untouched: the mask is local.
    square = ~outside_square
    assert (~allowed)[square].mean() > 0.3


def test_colour_change_in_a_disc_reaches_the_photo_there():
    rec, edited, d = colour_edit()
    aligned = make_aligned((200.0, 150.0), 256.0)  # 4 photo px per render px, axis-aligned
    photo = np.full((300, 400, 3), 120, np.uint8)
    out = apply_transfer(photo, aligned, compute_transfer(rec, edited)).astype(int) - photo
    # The disc's centre (40, 24) in render px -> photo px: tl + (p + 0.5) * 4.
    x, y = (np.array([40, 24]) + 0.5) * 4 + np.array([200 - 128, 150 - 128])
    core = out[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7]
    assert 25 < core[..., 0].mean() < 50, core[..., 0].mean()  # ~ +40 red (band-limited)
    assert np.abs(core[..., 1:]).mean() < 6  # green and blue (nearly) unchanged
    # Far from the disc the photo is untouched.
    assert not out[:, :100].any() and not out[250:].any()


def shifted_region(image: np.ndarray, box: tuple[int, int, int, int], shift: tuple[int, int]) -> np.ndarray:
    """``image`` with the contents of ``box`` (x0, y0, x1, y1) replaced by the image moved by ``shift``
    there: out(p) = image(p - shift) for p in box."""
    out = image.copy()
    x0, y0, x1, y1 = box
    dx, dy = shift
    out[y0:y1, x0:x1] = image[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return out


@pytest.mark.parametrize("shift", [(3, 0), (-2, 2), (0, -3)])
def test_flow_recovers_a_translated_region_backward(shift):
    tex = texture(R, seed=8, cells=16)
    box = (20, 18, 46, 44)
    rec, edited = u8(tex), u8(shifted_region(tex, box, shift))
    inner = (slice(box[1] + 5, box[3] - 5), slice(box[0] + 5, box[2] - 5))
    far = np.zeros((R, R), bool)
    far[:8] = far[-8:] = True
    far[:, :8] = far[:, -8:] = True
    for flow in (estimate_flow(rec.astype(np.float32), edited.astype(np.float32)),
                 compute_transfer(rec, edited).flow):
        assert flow.shape == (R, R, 2) and flow.dtype == np.float32
        # Backward convention: E(p) ~ R(p + flow(p)) and E(p) = R(p - shift) -> flow ~ -shift.
        median = np.median(flow[inner].reshape(-1, 2), axis=0)
        np.testing.assert_allclose(median, -np.array(shift, np.float64), atol=0.6)
        assert np.linalg.norm(flow[far], axis=-1).mean() < 0.5  # the rest does not move
    # warp(R, flow) explains the edit inside the region better than R itself.
    flow = compute_transfer(rec, edited).flow
    w = T.warp(rec.astype(np.float32), flow)
    err_warp = np.abs(w[inner] - edited[inner]).mean()
    err_none = np.abs(rec[inner].astype(np.float32) - edited[inner]).mean()
    assert err_warp < 0.35 * err_none


@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_photo_follows_the_flow_in_its_own_pixels(angle):
    """A photo made from a 4x finer texture than the render: moving a region of the render moves
    the same region of the photo, in photo px through the aligned face's rotation and scale."""
    n = 4 * R
    fine = texture(n, seed=9, cells=16)
    box, shift = (20, 18, 46, 44), (3, -2)  # render px
    fine_edit = shifted_region(fine, tuple(4 * v for v in box), (4 * shift[0], 4 * shift[1]))
    rec = u8(cv2.resize(fine, (R, R), interpolation=cv2.INTER_AREA))
    edited = u8(cv2.resize(fine_edit, (R, R), interpolation=cv2.INTER_AREA))
    h, w = 420, 460
    aligned = make_aligned((230.0, 210.0), float(n), res=R, angle=angle)
    fine_aligned = make_aligned((230.0, 210.0), float(n), res=n, angle=angle)

    def render_photo(img):  # the fine texture where the square is, grey elsewhere
        return u8(cv2.warpAffine(img, fine_aligned.from_photo[:2], (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128)))

    photo, expected = render_photo(fine), render_photo(fine_edit)
    out = apply_transfer(photo, aligned, compute_transfer(rec, edited))
    # The region's inner part, in photo px.
    u, v = to_transfer_px(aligned, R, photo.shape)
    inner = (u > box[0] + 5) & (u < box[2] - 6) & (v > box[1] + 5) & (v < box[3] - 6)
    err_out = np.abs(out[inner].astype(int) - expected[inner]).mean()
    err_photo = np.abs(photo[inner].astype(int) - expected[inner]).mean()
    assert err_out < 0.15 * err_photo, (err_out, err_photo)


# -- building blocks ------------------------------------------------------------------------------------
def test_band_limit_zero_bands_is_the_identity():
    x = np.random.default_rng(10).standard_normal((R, R, 3)).astype(np.float32)
    np.testing.assert_array_equal(band_limit(x, 0), x)


@pytest.mark.parametrize("size", [64, 37])
def test_band_limit_drops_a_checkerboard_and_keeps_a_ramp(size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    checker = np.repeat((((xx + yy) % 2) * 100 - 50)[..., None], 3, axis=2)
    limited = band_limit(checker, 1)
    assert limited.shape == checker.shape and limited.dtype == np.float32
    assert np.abs(limited[2:-2, 2:-2]).max() < 0.05 * np.abs(checker).max()
    ramp = np.dstack([xx * 2.0, yy * -1.5, xx + yy]).astype(np.float32)
    kept = band_limit(ramp, 1)
    np.testing.assert_allclose(kept[3:-3, 3:-3], ramp[3:-3, 3:-3], atol=0.5)
    assert np.abs(kept - ramp).max() < 3.0  # the borders bend a little (reflected), no more
    # Two bands: a coarser filter, still keeping the smooth part.
    np.testing.assert_allclose(band_limit(ramp, 2)[6:-6, 6:-6], ramp[6:-6, 6:-6], atol=1.0)


def test_gate_flow_zeroes_small_and_keeps_large_displacements():
    low, high = 0.003, 0.008  # of r = 64: 0.192 and 0.512 px
    flow = np.zeros((R, R, 2), np.float32)
    direction = np.array([0.6, -0.8], np.float32)
    flow[:10] = 0.1 * direction  # below low
    flow[10:20] = 2.0 * direction  # above high
    flow[20:30] = (0.5 * (low + high) * R) * direction  # halfway up the ramp
    flow[30:40] = 0.15 * direction[::-1]
    gated = gate_flow(flow, low, high)
    assert gated.dtype == np.float32 and gated.shape == flow.shape
    assert not gated[:10].any() and not gated[30:].any()
    np.testing.assert_array_equal(gated[10:20], flow[10:20])
    np.testing.assert_allclose(gated[20:30], 0.5 * flow[20:30], rtol=1e-4)


def test_compute_transfer_rejects_mismatched_renders():
    with pytest.raises(ValueError, match="square renders"):
        compute_transfer(np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="batch"):
        compute_transfer(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        compute_transfer(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    rec, edited, _ = colour_edit()
    with pytest.raises(ValueError, match="uint8"):
        apply_transfer(np.zeros((50, 50, 3), np.float32), make_aligned((25, 25), 40), compute_transfer(rec, edited))


def test_residual_and_generator_renderings():
    rec, edited = blob_edit((4, 0))
    photo = random_photo(200, 260, seed=11)
    aligned = make_aligned((130.0, 100.0), 150.0, angle=0.1)
    residual = transfer_edit(photo, aligned, rec, edited, Rendering.RESIDUAL)
    expected = apply_transfer(photo, aligned, compute_transfer(rec, edited, TransferOptions(use_flow=False)))
    np.testing.assert_array_equal(residual, expected)
    assert not compute_transfer(rec, edited, TransferOptions(use_flow=False)).flow.any()
    generator = transfer_edit(photo, aligned, rec, edited, "generator")
    np.testing.assert_array_equal(generator, paste_back(photo, aligned, edited))
    native = transfer_edit(photo, aligned, rec, edited)
    assert not np.array_equal(native, residual) and not np.array_equal(native, generator)


# -- strips and memory ----------------------------------------------------------------------------------
@pytest.mark.parametrize("strip_rows", [7, 1, 100_000])
def test_strips_give_the_same_result_as_one_pass(monkeypatch, strip_rows):
    rec, edited = blob_edit((3, 3))
    rec2, edited2, _ = colour_edit()
    transfer = compute_transfer(np.maximum(rec, rec2), np.maximum(edited, edited2))
    photo = random_photo(700, 650, seed=12)
    aligned = make_aligned((330.0, 340.0), 560.0, angle=0.25)
    default = apply_transfer(photo, aligned, transfer)
    assert T.STRIP_ROWS < 560  # the default itself runs in several strips here
    monkeypatch.setattr(T, "STRIP_ROWS", strip_rows)
    np.testing.assert_array_equal(apply_transfer(photo, aligned, transfer), default)
    assert (default != photo).any()


def test_12_megapixel_photo_in_bounded_memory():
    h, w = 3000, 4000
    photo = np.empty((h, w, 3), np.uint8)
    photo[...] = np.arange(w, dtype=np.uint8)[None, :, None]  # cheap content; the edit is what matters
    photo[::2, :, 1] = 200
    aligned = make_aligned((2100.0, 1400.0), 1500.0, angle=0.1)
    rec, edited = blob_edit((4, -3))
    transfer = compute_transfer(rec, edited)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        out = apply_transfer(photo, aligned, transfer)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The output photo itself is 36 MB; a full-size float copy of the photo would be 144 MB, of the
    # face's square alone (1700 px bounding box) 35 MB per float32 plane.
    assert peak - out.nbytes < 150e6, f"peak {peak / 1e6:.0f} MB"
    assert elapsed < 12, elapsed
    assert out.shape == photo.shape
    changed = (out != photo).any(-1)
    assert changed.any()
    outside = paste_mask(photo.shape, aligned) == 0
    assert not changed[outside].any()
