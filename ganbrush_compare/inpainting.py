"""Compare inpainting methods (DESIGN.md section 6) on any images and masks.

Images: held-out faces (alternating CelebA / UTKFace, framed as the training data, at one
resolution) or a folder of images of any sizes. Masks (1 = hole):

- irregular-12k bins (``"10-20"`` ... ``"50-60"``): in each bin image ``i`` gets the mask at
  position ``i`` of a permutation of that bin's 2000 masks drawn with ``seed`` (0 in the
  protocol), so the pairing is fixed and every method sees the same (image, mask) pairs; masks are
  resized to each image with nearest neighbour;
- a folder of the user's masks (white = hole), paired with the images by file name (stem) and
  resized to each image (area, then binarised at 50%); each pair goes to the bin of its hole ratio.

Per bin and method, on the composited output (known pixels are the input's): L1 (mean absolute
error on [0, 1]), PSNR (dB), SSIM, LPIPS (VGG), FID against the same images unmasked, and
milliseconds per image on this machine (the inpainting call only). FID of a few hundred images
is biased upward; it is comparable across the methods of one run, not with papers (``nan``, shown
as ``-``, for a bin of fewer than two images).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganbrush_compare.folders import image_files
from ganbrush_compare.report import Column, Report
from ganbrush_core.metrics import psnr, ssim
from inpainting.inpaint import GLCIC_METHODS, Method, inpaint
from inpainting.masks import IRREGULAR_BINS, irregular_mask_indices, load_irregular_mask

#: The protocol's bins: 10-20% ... 50-60% (1-10% is left out, as in the paper's table).
DEFAULT_BINS = ("10-20", "20-30", "30-40", "40-50", "50-60")

COLUMNS = [Column("bin", "mask bin", left=True), Column("hole", "hole", ".3f"), Column("images", "images", "d"),
           Column("method", "method", left=True), Column("l1", "L1", ".4f"), Column("psnr", "PSNR", ".2f"),
           Column("ssim", "SSIM", ".4f"), Column("lpips", "LPIPS", ".4f"), Column("fid", "FID", ".1f"),
           Column("ms", "ms/img", ".1f")]

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Sample:
    """One (image, mask) pair: ``image`` ``[1, 3, H, W]`` in [-1, 1], ``mask`` ``[1, 1, H, W]``
    in {0, 1} (1 = hole)."""

    name: str
    image: torch.Tensor
    mask: torch.Tensor


def bin_label(lo: float, hi: float) -> str:
    return f"{round(lo * 100)}-{round(hi * 100)}%"


def parse_bins(text: str | Sequence[str]) -> list[int]:
    """Irregular-12k bin indices from labels such as ``"10-20,30-40"`` (a ``%`` may follow)."""
    labels = {bin_label(lo, hi)[:-1]: i for i, (lo, hi) in enumerate(IRREGULAR_BINS)}
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        key = item.strip().rstrip("%")
        if key not in labels:
            raise ValueError(f"unknown irregular mask bin {item.strip()!r}; choose from {', '.join(labels)}")
        out.append(labels[key])
    if not out:
        raise ValueError(f"no irregular mask bins given; choose from {', '.join(labels)}")
    return list(dict.fromkeys(out))


def held_out_images(num: int, res: int) -> list[tuple[str, torch.Tensor]]:
    """The first ``num`` held-out faces at ``res`` px, each ``[1, 3, res, res]``."""
    from ganbrush_core.faces import held_out_faces

    return [(f"held-out {i}", face[None]) for i, face in enumerate(held_out_faces(num, res))]


def folder_images(folder: str | os.PathLike) -> list[tuple[str, torch.Tensor]]:
    """Every image in ``folder`` (sorted by name) as ``[1, 3, H, W]`` in [-1, 1]."""
    from ganbrush_core.images import read_image

    return [(p.name, read_image(p)) for p in image_files(folder)]


def irregular_pairs(images: Sequence[tuple[str, torch.Tensor]], bins: Sequence[int], seed: int = 0
                    ) -> dict[str, list[Sample]]:
    """Each bin's fixed (image, mask) pairing: image ``i`` gets mask ``i`` of a permutation of the
    bin drawn with ``[seed, bin]`` (cycled when there are more images than masks)."""
    out = {}
    for b in bins:
        indices = _paired_indices(b, len(images), seed)
        out[bin_label(*IRREGULAR_BINS[b])] = [Sample(name, image, load_irregular_mask(index, tuple(image.shape[-2:])))
                                              for index, (name, image) in zip(indices, images)]
    return out


def _paired_indices(b: int, num: int, seed: int) -> list[int]:
    """The irregular-12k mask indices of images ``0 .. num-1`` in bin ``b``'s fixed pairing."""
    indices = irregular_mask_indices(b)
    order = np.random.default_rng([seed, b]).permutation(len(indices))
    return [indices[int(order[i % len(order)])] for i in range(num)]


def paired_masks(b: int, num: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[num, 1, size, size]`` (1 = hole): the masks that images ``0 .. num-1`` of a square
    ``size`` get in bin ``b``, the same pairing as :func:`irregular_pairs`."""
    return torch.cat([load_irregular_mask(i, (size, size)) for i in _paired_indices(b, num, seed)])


def hole_bin(ratio: float) -> tuple[float, str]:
    """(sort key, label) of the irregular-12k bin a hole ratio falls in; below the first bin
    ``0-1%``, above the last ``60-100%``."""
    for lo, hi in IRREGULAR_BINS:
        if lo <= ratio < hi:
            return lo, bin_label(lo, hi)
    first, last = IRREGULAR_BINS[0][0], IRREGULAR_BINS[-1][1]
    return (0.0, bin_label(0, first)) if ratio < first else (last, bin_label(last, 1))


def folder_pairs(images: Sequence[tuple[str, torch.Tensor]], mask_folder: str | os.PathLike
                 ) -> dict[str, list[Sample]]:
    """Pair each image with the mask of the same file stem in ``mask_folder`` (white = hole,
    resized to the image), grouped by the bin of each pair's hole ratio (bins in hole order)."""
    from ganbrush_core.masks import MaskError, check_mask, read_mask

    masks = {p.stem: p for p in image_files(mask_folder, "--masks")}
    missing = [name for name, _ in images if Path(name).stem not in masks]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(f"--masks {mask_folder}: no mask named like {', '.join(missing[:3])}{more} "
                                "(a mask pairs with the image of the same file name, any image suffix)")
    grouped: dict[tuple[float, str], list[Sample]] = {}
    for name, image in images:
        path = masks[Path(name).stem]
        mask = read_mask(path, size=tuple(image.shape[-2:]))
        try:
            check_mask(mask, tuple(image.shape[-2:]), allow_empty=False)
        except MaskError as e:
            raise MaskError(f"{path}: {e}") from None
        grouped.setdefault(hole_bin(float(mask.mean())), []).append(Sample(name, image, mask))
    return {label: samples for (_, label), samples in sorted(grouped.items())}


def _batches(samples: Sequence[Sample], batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive samples of one size, at most ``batch`` at a time, as (images, masks)."""
    i = 0
    while i < len(samples):
        j = i + 1
        while j < len(samples) and j - i < batch and samples[j].image.shape == samples[i].image.shape:
            j += 1
        group = samples[i:j]
        yield torch.cat([s.image for s in group]), torch.cat([s.mask for s in group])
        i = j


#: Suffix of a method name that runs a GLCIC method without its Poisson blending (``glcic-no-poisson``).
NO_POISSON = "-no-poisson"


@dataclass(frozen=True)
class Variant:
    """One method of a comparison: an inpainting method and how it runs. ``poisson``: GLCIC's
    Poisson blending (the paper's post-processing), measured with and without."""

    method: Method
    poisson: bool = True

    @property
    def name(self) -> str:
        return self.method.value if self.poisson else self.method.value + NO_POISSON


def run_method(variant: Variant, samples: Sequence[Sample], model, batch: int) -> tuple[list[torch.Tensor], float]:
    """Composited outputs (one ``[n, 3, H, W]`` tensor per batch) and ms per image (the
    inpainting call only, batched as a user would). ``model``: EdgeConnect's (``None``: the
    default); the GLCIC methods run their shipped defaults."""
    outs, seconds = [], 0.0
    for images, masks in _batches(samples, batch):
        t = time.perf_counter()
        with torch.no_grad():
            res = inpaint(images, masks, method=variant.method, poisson=variant.poisson,
                          model=model if variant.method is Method.EDGECONNECT else None)
        seconds += time.perf_counter() - t
        outs.append(res.image)
    return outs, 1000 * seconds / len(samples)


def scores(outs: Sequence[torch.Tensor], samples: Sequence[Sample], lpips, batch: int,
           device: torch.device) -> dict[str, float]:
    """Means over the images of L1 (on [0, 1]), PSNR, SSIM and LPIPS, per image then averaged."""
    per: dict[str, list[torch.Tensor]] = {"l1": [], "psnr": [], "ssim": [], "lpips": []}
    for out, (images, _) in zip(outs, _batches(samples, batch)):
        per["l1"].append(((out - images).abs() / 2).flatten(1).mean(1))
        per["psnr"].append(psnr(out, images))
        per["ssim"].append(ssim(out, images))
        with torch.no_grad():
            per["lpips"].append(lpips(out.to(device), images.to(device)).cpu())
    return {k: float(torch.cat(v).mean()) for k, v in per.items()}


def _features(batches: Sequence[torch.Tensor], extractor, device: torch.device) -> np.ndarray:
    from ganbrush_core.fid import features_from_images

    return np.concatenate([features_from_images(b, len(b), extractor, device=device, progress=False)
                           for b in batches])


def _fid(real, outs: Sequence[torch.Tensor], extractor, device: torch.device) -> float:
    from ganbrush_core.fid import Stats, fid_from_stats

    if real is None or sum(len(o) for o in outs) < 2:
        return float("nan")
    return fid_from_stats(real, Stats.of(_features(outs, extractor, device)))


def best_per_bin(rows: Sequence[dict]) -> list[str]:
    """Which method wins LPIPS and FID in each bin."""
    lines = []
    for b in dict.fromkeys(r["bin"] for r in rows):
        group = [r for r in rows if r["bin"] == b]
        lp = min(group, key=lambda r: r["lpips"])["method"]
        fid = min(group, key=lambda r: r["fid"])["method"] if all(np.isfinite(r["fid"]) for r in group) else "-"
        lines.append(f"- {b}: best LPIPS {lp}, best FID {fid}")
    return lines


def compare_inpainting(pairs: dict[str, list[Sample]], methods: Sequence[Variant | Method | str], model=None,
                       batch: int = 50, fid: bool = True, device: str | torch.device = "cpu",
                       title: str = "", log: Log = _stderr) -> Report:
    """Run every method on every bin's pairs and return the :class:`Report` (rows per bin, then
    method; grid: one row per bin, the first pair's masked input (holes white), then each
    method's output). ``model``: EdgeConnect (:func:`inpainting.load_edgeconnect`) when
    ``"edgeconnect"`` is among ``methods`` (``None``: the default); a method name may end in
    ``-no-poisson`` (GLCIC without its blending); ``fid=False`` skips FID (Inception is the slow part)."""
    from ganbrush_core.metrics import lpips_model

    methods = [as_variant(m) for m in methods]
    if not methods:
        raise ValueError(f"no inpainting methods given; choose from {', '.join(m.value for m in Method)}")
    if not pairs or not any(pairs.values()):
        raise ValueError("no (image, mask) pairs to compare")
    device = torch.device(device)
    lpips = lpips_model("vgg", device=device)
    extractor = real = None
    if fid:
        from ganbrush_core.fid import InceptionFeatures, Stats

        extractor = InceptionFeatures().to(device)
        # The real set: every distinct image once, unmasked (each bin holds the same images with the
        # irregular masks; the user's masks split the images among the bins).
        distinct = {s.name: s for samples in pairs.values() for s in samples}
        if len(distinct) >= 2:
            real = Stats.of(_features([images for images, _ in _batches(list(distinct.values()), batch)],
                                      extractor, device))
    rows, tiles = [], []
    for label, samples in pairs.items():
        hole = float(np.mean([float(s.mask.mean()) for s in samples]))
        first = samples[0]
        tiles.append((first.image * (1 - first.mask) + first.mask)[0])  # the masked input, holes white
        for method in methods:
            outs, ms = run_method(method, samples, model, batch)
            rows.append({"bin": label, "hole": hole, "images": len(samples), "method": method.name,
                         **scores(outs, samples, lpips, batch, device), "fid": _fid(real, outs, extractor, device),
                         "ms": ms})
            tiles.append(outs[0][0])
            r = rows[-1]
            log(f"  {label:7s} {method.name:11s}: L1 {r['l1']:.4f} PSNR {r['psnr']:.2f} SSIM {r['ssim']:.4f} "
                f"LPIPS {r['lpips']:.4f} FID {r['fid']:.1f} {r['ms']:.1f} ms/img")
    meta = {"methods": [m.name for m in methods], "bins": list(pairs),
            "pairs": {label: [s.name for s in samples] for label, samples in pairs.items()},
            "fid": fid, "torch_threads": torch.get_num_threads()}
    legend = [f"{label}: masked input, then {', '.join(m.name for m in methods)}" for label in pairs]
    return Report("inpainting", title or f"Inpainting, torch threads {torch.get_num_threads()}", COLUMNS, rows,
                  notes=best_per_bin(rows), meta=meta, tiles=tiles, grid_cols=len(methods) + 1, grid_legend=legend)


def as_variant(m: Variant | Method | str) -> Variant:
    """``m`` as a :class:`Variant` (a method's name, or ``glcic-no-poisson``), or a one-line error
    naming the choices."""
    if isinstance(m, Variant):
        return m
    name = m.value if isinstance(m, Method) else str(m)
    base = name.removesuffix(NO_POISSON)
    try:
        method = Method(base)
    except ValueError:
        raise ValueError(f"unknown inpainting method {m!r}; choose from "
                         f"{', '.join([x.value for x in Method] + [g.value + NO_POISSON for g in GLCIC_METHODS])}"
                         ) from None
    if base != name and method not in GLCIC_METHODS:
        raise ValueError(f"{name}: only the glcic methods have Poisson blending to leave out")
    return Variant(method, poisson=base == name)
