"""Face data: the held-out split, a common framing for CelebA and UTKFace, the packed data set
on disk (builder and the one reader) and a torch ``Dataset`` over it.

Conventions: files on disk are uint8 HWC RGB (``images.npy`` is ``[N, H, W, 3]`` uint8); what the
``FaceDataset`` returns is float32 CHW RGB in [-1, 1].

Split: CelebA 009001-010000 and every UTKFace file whose 0-based index in
sorted name order is divisible by 20 are held out for evaluation and never enter training.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ganbrush_core.images import save_pil, uint8_to_float
from ganbrush_core.io import atomic_path, refuse_overwrite, write_text
from ganbrush_core.paths import data_root as default_data_root

SOURCES = ("celeba", "utkface")
SOURCE_DIRS = {"celeba": "celeba-10k", "utkface": "utkface"}
SPLITS = ("train", "heldout")

CELEBA_COUNT = 10_000
CELEBA_FIRST_HELD_OUT = 9001  # 009001.jpg .. 010000.jpg
UTKFACE_HELD_OUT_EVERY = 20  # sorted index 0, 20, 40, ...

FORMAT_VERSION = 1
IMAGES_FILE = "images.npy"
META_FILE = "meta.json"


# --------------------------------------------------------------------------------------------
# Where the data lives and which files belong to which split


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown face source {source!r}; expected one of {', '.join(SOURCES)}")
    return source


def source_dir(source: str, data_root: str | os.PathLike | None = None) -> Path:
    root = Path(data_root) if data_root is not None else default_data_root()
    return root / "faces" / SOURCE_DIRS[_check_source(source)]


@lru_cache(maxsize=8)
def _sorted_jpgs(directory: str) -> tuple[str, ...]:
    # Plain sorted() of the names (code-point order) is the order the UTKFace held-out rule means.
    return tuple(sorted(n for n in os.listdir(directory) if n.lower().endswith(".jpg")))


def list_source_files(source: str, data_root: str | os.PathLike | None = None) -> list[str]:
    """All image file names of ``source`` in sorted name order (train and held-out alike)."""
    d = source_dir(source, data_root)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: face data not found (set GANBRUSH_DATA or put shared/data beside the repo)")
    return list(_sorted_jpgs(str(d)))


def is_held_out(source: str, name_or_index: str | int, data_root: str | os.PathLike | None = None) -> bool:
    """Whether a face is reserved for evaluation (the split rule in the module docstring).

    CelebA: ``name_or_index`` is a file name (``"009001.jpg"``) or the image number (9001);
    numbers 9001-10000 are held out. UTKFace: a 0-based index in sorted name order, or a file
    name (looked up in the sorted listing under ``data_root``); indices divisible by 20 are held
    out.
    """
    _check_source(source)
    if source == "celeba":
        number = int(Path(name_or_index).stem) if isinstance(name_or_index, str) else int(name_or_index)
        if not 1 <= number <= CELEBA_COUNT:
            raise ValueError(f"CelebA image number {number} is outside 1..{CELEBA_COUNT}")
        return number >= CELEBA_FIRST_HELD_OUT
    if isinstance(name_or_index, str):
        names = list_source_files(source, data_root)
        try:
            index = names.index(name_or_index)
        except ValueError:
            raise ValueError(f"{name_or_index}: not a UTKFace file in {source_dir(source, data_root)}") from None
    else:
        index = int(name_or_index)
        if index < 0:
            raise ValueError(f"UTKFace index must be >= 0, got {index}")
    return index % UTKFACE_HELD_OUT_EVERY == 0


def split_files(source: str, split: str, data_root: str | os.PathLike | None = None) -> list[str]:
    """File names of ``source`` in ``split`` ("train" or "heldout"), in sorted name order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    names = list_source_files(source, data_root)
    want_held_out = split == "heldout"
    if source == "celeba":
        return [n for n in names if is_held_out(source, n) == want_held_out]
    return [n for i, n in enumerate(names) if (i % UTKFACE_HELD_OUT_EVERY == 0) == want_held_out]


# --------------------------------------------------------------------------------------------
# Framing
#
# Both sources are already aligned, each with its own fixed framing, so one fixed box per source
# maps them to a common framing; no landmark detection is needed. The boxes come from landmarks
# measured on mean images (CelebA 000001-003000, every third UTKFace file): eye centres are the
# darkness-weighted centroids around each eye, the mouth is the darkest row of the lip band.
#
#   CelebA 89x109:  eyes (33.9, 54.7) and (54.1, 54.7): centre (44.0, 54.7), distance 20.3;
#                   mouth y 76 (these are CelebA's published mean landmarks for 178x218, halved).
#   UTKFace 200x200: eyes (57.8, 56.4) and (138.1, 56.5): centre (98.0, 56.4), distance 80.3;
#                   mouth y 137.
#
# Face size f = mean of eye distance and eye-to-mouth distance (20.8 px CelebA, 80.5 px UTKFace:
# one UTKFace pixel is 1/3.87 CelebA pixel); the crop is a square of side MARGIN * f centred
# on the midpoint between the eye centre and the mouth, shifted down by SHIFT * f.
#
# Why this tight framing: UTKFace is cropped from the eyebrows' top to the chin (eye distance 0.40
# of its width), far tighter than CelebA's (0.23). Matching UTKFace to a looser CelebA-style crop
# means padding about a quarter of every UTKFace picture with invented (mirrored, blurred)
# content, which the generator would then learn to draw for half of the data set. So the common
# framing is the one UTKFace already has: MARGIN 2.43 and SHIFT 0.04 give UTKFace the box
# (0.3, 2.2)-(195.8, 197.7), entirely inside the picture, and CelebA the box (18.7, 40.9)-(69.3,
# 91.5), a 50.5 px square (64 px output upsamples it 1.27x). In the output, the eye centre sits at
# (0.50, 0.27-0.28) of the side and the eye distance is 0.40-0.41 of the side for both sources (the
# contact sheet of the build shows both side by side). Any other MARGIN that needs pixels outside
# a source picture gets a reflected border faded into a blur of itself (see ``pad_mirrored``).
MARGIN = 2.43
SHIFT = 0.04


@dataclass(frozen=True)
class FaceGeometry:
    """Mean landmarks of an aligned source, in source pixels (x right, y down)."""

    eye_center: tuple[float, float]
    eye_distance: float
    mouth_y: float

    @property
    def face_size(self) -> float:
        return (self.eye_distance + (self.mouth_y - self.eye_center[1])) / 2

    def box(self, margin: float = MARGIN, shift: float = SHIFT) -> tuple[float, float, float, float]:
        """Square crop ``(left, top, right, bottom)`` in source pixels (may leave the picture)."""
        f = self.face_size
        cx = self.eye_center[0]
        cy = (self.eye_center[1] + self.mouth_y) / 2 + shift * f
        half = margin * f / 2
        return (cx - half, cy - half, cx + half, cy + half)


GEOMETRY = {
    "celeba": FaceGeometry(eye_center=(44.0, 54.7), eye_distance=20.3, mouth_y=76.0),
    "utkface": FaceGeometry(eye_center=(98.0, 56.4), eye_distance=80.3, mouth_y=137.0),
}
SOURCE_SIZE = {"celeba": (89, 109), "utkface": (200, 200)}  # (width, height)


def max_resolution(source: str) -> int:
    """Largest output side (power of two) that does not upsample the crop more than 1.3x."""
    side = GEOMETRY[_check_source(source)].box()[2] - GEOMETRY[source].box()[0]
    return 2 ** int(math.floor(math.log2(side * 1.3)))


def pad_mirrored(image: Image.Image, pad: int) -> Image.Image:
    """Add ``pad`` px on every side: a mirror image of the border that fades into a blur of
    itself, so no hard edge or sharp mirrored feature appears in the padding."""
    from PIL import ImageFilter

    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    mirrored = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    blurred = np.asarray(Image.fromarray(mirrored.round().astype(np.uint8))
                         .filter(ImageFilter.GaussianBlur(pad * 0.5 + 1)), dtype=np.float32)
    yy, xx = np.mgrid[0 : h + 2 * pad, 0 : w + 2 * pad]
    outside = np.maximum.reduce([pad - xx, xx - (w + pad - 1), pad - yy, yy - (h + pad - 1), np.zeros_like(xx)])
    fade = np.clip(outside / max(pad * 0.3, 1.0), 0, 1)[..., None]
    return Image.fromarray((mirrored * (1 - fade) + blurred * fade).round().clip(0, 255).astype(np.uint8))


def frame_face(image: Image.Image, source: str, res: int, margin: float = MARGIN, shift: float = SHIFT) -> np.ndarray:
    """Crop ``image`` (an aligned face of ``source``) to the common framing, resize to
    ``res`` x ``res`` with Lanczos; returns uint8 ``[res, res, 3]``."""
    image = image.convert("RGB")
    box = GEOMETRY[_check_source(source)].box(margin, shift)
    w, h = image.size
    overflow = max(0.0, -box[0], -box[1], box[2] - w, box[3] - h)
    pad = math.ceil(overflow) + 2 if overflow > 0 else 0  # +2: room for the Lanczos support
    if pad:
        image = pad_mirrored(image, pad)
        box = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
    return np.asarray(image.resize((res, res), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def held_out_faces(num: int | None, res: int, data_root: str | os.PathLike | None = None) -> torch.Tensor:
    """The first ``num`` held-out faces (``None``: all), alternating CelebA / UTKFace while both
    last, framed as the training data, as ``[num, 3, res, res]`` float32 in [-1, 1]. The order is
    fixed, so benchmarks that take the first ``num`` compare the same faces."""
    lists = [[(src, name) for name in split_files(src, "heldout", data_root)] for src in SOURCES]
    picks = [pair for group in zip(*lists) for pair in group]
    longest = max(lists, key=len)
    picks += longest[min(map(len, lists)):]
    if num is not None:
        if not 0 < num <= len(picks):
            raise ValueError(f"there are {len(picks)} held-out faces; ask for 1..{len(picks)}, not {num}")
        picks = picks[:num]
    faces = [frame_face(Image.open(source_dir(src, data_root) / name), src, res) for src, name in picks]
    return uint8_to_float(np.stack(faces))


# --------------------------------------------------------------------------------------------
# Building the packed data set


@dataclass
class BuildResult:
    out_dir: Path
    counts: dict[str, int]
    res: int
    seconds: float


def _check_res(res: int, sources: Sequence[str]) -> None:
    if res < 8 or res & (res - 1):
        raise ValueError(f"--res must be a power of two >= 8, got {res}")
    for s in sources:
        limit = max_resolution(s)
        if res > limit:
            w, h = SOURCE_SIZE[s]
            if s == "celeba":
                raise ValueError(f"res {res} is too large for CelebA (its {w}x{h} pictures hold a face crop of about "
                                 f"50 px; at most {limit}): use only UTKFace (--sources utkface) for {res} px")
            raise ValueError(f"res {res} is too large for {s} ({w}x{h} pictures; at most {limit})")


def _refuse_non_empty(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        refuse_overwrite(out_dir, force)
        for name in (IMAGES_FILE, META_FILE, "report.md", "contact_sheet.png"):
            (out_dir / name).unlink(missing_ok=True)


def _load_and_frame(args: tuple[Path, str, int]) -> np.ndarray:
    path, source, res = args
    with Image.open(path) as im:
        return frame_face(im, source, res)


def contact_sheet(groups: dict[str, np.ndarray], cols: int = 8, pad: int = 2) -> Image.Image:
    """Tile uint8 ``[n, H, W, 3]`` image groups side by side, one block of ``cols`` columns per
    group (e.g. CelebA | UTKFace), with a wider gap between the blocks."""
    blocks = []
    for images in groups.values():
        n, h, w, _ = images.shape
        rows = max(1, math.ceil(n / cols))
        block = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
        for i, img in enumerate(images):
            r, c = divmod(i, cols)
            block[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
        blocks.append(block)
    height = max(b.shape[0] for b in blocks)
    gap = np.full((height, 4 * pad, 3), 255, np.uint8)
    padded = [np.pad(b, ((0, height - b.shape[0]), (0, 0), (0, 0)), constant_values=255) for b in blocks]
    parts: list[np.ndarray] = []
    for b in padded:
        parts += [b, gap]
    return Image.fromarray(np.concatenate(parts[:-1], axis=1))


def _sheet_picks(files: list[str], per_source: int, seed: int = 0) -> dict[str, list[int]]:
    by_source: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_source.setdefault(f.split("/", 1)[0], []).append(i)
    rng = np.random.default_rng(seed)
    return {s: sorted(rng.choice(idx, size=min(per_source, len(idx)), replace=False).tolist())
            for s, idx in by_source.items()}


def build_face_dataset(out_dir: str | os.PathLike, res: int = 64, split: str = "train",
                       sources: Sequence[str] = SOURCES, data_root: str | os.PathLike | None = None,
                       force: bool = False, limit: int | None = None, workers: int | None = None,
                       progress: bool = True) -> BuildResult:
    """Frame, resize and pack the faces of ``split`` into ``out_dir``.

    Writes ``images.npy`` (uint8 ``[N, res, res, 3]``, ``np.load(mmap_mode="r")``-able),
    ``meta.json`` (format, res, split, sources, counts per source, the ``source/name`` of every
    row in order), ``report.md`` and ``contact_sheet.png``. ``limit`` keeps the first ``limit``
    files of each source (for tests). Refuses a non-empty ``out_dir`` unless ``force``.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    sources = tuple(dict.fromkeys(_check_source(s) for s in sources))
    if not sources:
        raise ValueError("no face sources given")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    _check_res(res, sources)
    out_dir = Path(out_dir)
    _refuse_non_empty(out_dir, force)

    jobs: list[tuple[Path, str, int]] = []
    files: list[str] = []
    counts: dict[str, int] = {}
    for s in sources:
        names = split_files(s, split, data_root)[: limit if limit is not None else None]
        counts[s] = len(names)
        jobs += [(source_dir(s, data_root) / n, s, res) for n in names]
        files += [f"{s}/{n}" for n in names]
    if not jobs:
        raise ValueError(f"no {split} faces found for {', '.join(sources)}")

    with atomic_path(out_dir / IMAGES_FILE) as tmp:
        # Written straight into a memory-mapped .npy, so a 128 px build never holds it all in RAM.
        packed = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(jobs), res, res, 3))
        # PIL releases the GIL while decoding and resampling, so threads use every core.
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            framed = pool.map(_load_and_frame, jobs, chunksize=64)
            for i, img in enumerate(tqdm(framed, total=len(jobs), desc=f"faces {split} {res}px",
                                         unit="img", disable=not progress)):
                packed[i] = img
        packed.flush()
        del packed

    meta = {"format": "ganbrush-faces", "version": FORMAT_VERSION, "res": res, "split": split,
            "sources": list(sources), "counts": counts, "total": len(files),
            "framing": {"margin": MARGIN, "shift": SHIFT}, "files": files}
    write_text(out_dir / META_FILE, json.dumps(meta, indent=1) + "\n")

    images = np.load(out_dir / IMAGES_FILE, mmap_mode="r")
    picks = _sheet_picks(files, per_source=64)
    save_pil(contact_sheet({s: np.asarray(images[idx]) for s, idx in picks.items()}), out_dir / "contact_sheet.png")
    seconds = time.perf_counter() - start
    _write_report(out_dir, meta, seconds)
    return BuildResult(out_dir=out_dir, counts=counts, res=res, seconds=seconds)


def _write_report(out_dir: Path, meta: dict, seconds: float) -> None:
    size_mb = (out_dir / IMAGES_FILE).stat().st_size / 2**20
    lines = [f"# Face data set: {meta['split']}, {meta['res']} px", "",
             "| source | images |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in meta["counts"].items()]
    lines += [f"| total | {meta['total']} |", "",
              f"- resolution: {meta['res']}x{meta['res']} RGB, uint8, `{IMAGES_FILE}` [N, H, W, 3] ({size_mb:.1f} MiB)",
              f"- split: `{meta['split']}` (CelebA 009001-010000 and every 20th UTKFace file "
              "in sorted name order are held out)",
              f"- framing: square of {MARGIN} x face size around the eyes-mouth midpoint (shift {SHIFT}); eye centre "
              "at (0.50, 0.28) of the side, eye distance 0.40 of the side, for both sources (measured on mean faces)",
              "- resize: PIL Lanczos; horizontal flips are applied at load time (`FaceDataset(xflip=True)`)",
              f"- build time: {seconds:.1f} s",
              "", "`contact_sheet.png`: random picks, one block per source, side by side.", ""]
    write_text(out_dir / "report.md", "\n".join(lines))


# --------------------------------------------------------------------------------------------
# Reading it back


class FaceDataError(ValueError):
    """A folder that is not a usable packed face data set; ``str()`` is one line saying what to do."""


def read_packed_faces(path: str | os.PathLike, split: str | None = None) -> tuple[np.ndarray, dict]:
    """The memory-mapped (read-only) uint8 ``[N, H, W, 3]`` array and ``meta.json`` of a packed
    face folder written by :func:`build_face_dataset`, checked for consistency. With ``split``,
    a folder of another split is refused (training readers pass ``"train"`` so held-out faces
    never enter training)."""
    path = Path(path)
    images_file, meta_file = path / IMAGES_FILE, path / META_FILE
    if not images_file.is_file() or not meta_file.is_file():
        raise FaceDataError(f"{path}: not a packed face folder (needs {IMAGES_FILE} and {META_FILE}); build one with "
                            "`ganbrush data faces --out DIR`")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise FaceDataError(f"{meta_file}: not valid JSON ({e.msg}); rebuild the folder") from e
    if not isinstance(meta, dict) or "res" not in meta or "split" not in meta:
        raise FaceDataError(f"{meta_file}: needs the keys 'res' and 'split'; rebuild the folder")
    if meta.get("format", "ganbrush-faces") != "ganbrush-faces":
        raise FaceDataError(f"{meta_file}: not a ganbrush face data set (format {meta.get('format')!r})")
    if split is not None and meta["split"] != split:
        raise FaceDataError(f"{path} holds the {meta['split']!r} split; training uses the {split} split only "
                            f"(build it with `ganbrush data faces --split {split}`)")
    try:
        images = np.load(images_file, mmap_mode="r")
    except ValueError as e:
        raise FaceDataError(f"{images_file}: unreadable ({e}); rebuild the folder") from e
    res = int(meta["res"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (res, res, 3) or len(images) == 0:
        raise FaceDataError(f"{images_file}: expected uint8 [N, {res}, {res}, 3] with N > 0, got {images.dtype} "
                            f"{list(images.shape)}; rebuild the folder")
    return images, meta


def read_meta(path: str | os.PathLike) -> dict:
    """``meta.json`` of a packed face folder (see :func:`read_packed_faces`)."""
    return read_packed_faces(path)[1]


def load_images(path: str | os.PathLike) -> np.ndarray:
    """The packed uint8 ``[N, H, W, 3]`` array, memory-mapped (read-only)."""
    return read_packed_faces(path)[0]


class FaceDataset(Dataset):
    """Packed faces as float32 CHW RGB in [-1, 1], optionally mirrored left-right at random.

    The array is memory-mapped, and opened lazily in each process, so DataLoader workers share
    the page cache instead of copying the data. ``split`` (e.g. ``"train"``) refuses a folder of
    another split. Subclasses override :meth:`__getitem__` and use :meth:`_array` and :meth:`draw_flip`.
    """

    def __init__(self, path: str | os.PathLike, xflip: bool = False, split: str | None = None) -> None:
        self.path = Path(path)
        images, self.meta = read_packed_faces(self.path, split)
        self.res = int(self.meta["res"])
        self.xflip = xflip
        self._images: np.ndarray | None = None
        self._len = len(images)

    def _array(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
        return self._images

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = None  # re-open the memory map in the worker
        return state

    def draw_flip(self) -> bool:
        """Whether to mirror the next sample: torch's RNG, which DataLoader seeds differently in
        each worker (a numpy Generator copied into every worker would flip the same indices)."""
        return self.xflip and bool(torch.rand(()) < 0.5)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = self._array()[index]  # uint8 HWC
        if self.draw_flip():
            img = img[:, ::-1]
        return uint8_to_float(img)[0]


def iter_batches(images: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    """Consecutive uint8 NHWC batches of a (memory-mapped) array."""
    for i in range(0, len(images), batch_size):
        yield np.asarray(images[i : i + batch_size])

