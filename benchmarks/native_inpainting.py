"""Native-resolution inpainting: plain upsampling of a 64 px fill vs. upsampling + contextual
residual aggregation (inpainting.residual_aggregation), on held-out UTKFace faces at their own 200 px.

Protocol: the first ``--num`` held-out UTKFace faces (every file whose index in sorted name order is
divisible by 20), unframed, at 200 px x the irregular-12k bins 10-20% ... 50-60% with the fixed
pairing of benchmarks/inpainting.py (seed 0; masks resized to 200 px with nearest neighbour). Each
face is area-downsampled to 64 px (every 64 px pixel touching the hole is a hole), filled there by
biharmonic, EdgeConnect, GLCIC and glcic-refine (``inpainting.inpaint``), and brought back to 200 px by (a) bicubic
upsampling of the fill, (b) the same plus residual aggregation; known pixels are the photo's.

Per bin, method and upscaling, over the whole 200 px image: L1 (on [0, 1]), PSNR, SSIM, LPIPS (VGG)
(ganbrush_compare.inpainting's ``scores``); sharpness = variance of the Laplacian inside the hole
(shrunk by 1 px so the stencil never straddles the border) of the output over that of the truth,
mean over faces (1 = as sharp as the photo); ms per image of the upscaling step. Then the
aggregation's ms at 1, 4 and 12 MP (the first face upscaled, a 30-40% mask, a 64 px biharmonic fill).

    python benchmarks/native_inpainting.py              # 10 faces per bin (about 4 min on 1 shared thread)
    python benchmarks/native_inpainting.py --num 4 --bins 3 --methods biharmonic   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inpainting import DEFAULT_BINS  # noqa: E402
from ganbrush_compare.inpainting import Sample, as_variant, paired_masks, run_method, scores  # noqa: E402
from ganbrush_core.faces import source_dir, split_files  # noqa: E402
from ganbrush_core.images import uint8_to_float  # noqa: E402
from ganbrush_core.metrics import lpips_model, sharpness  # noqa: E402
from inpainting.checkpoints import load_edgeconnect  # noqa: E402
from inpainting.inpaint import Method  # noqa: E402
from inpainting.masks import IRREGULAR_BINS  # noqa: E402
from inpainting.residual_aggregation import (  # noqa: E402
    downsample_with_mask,
    low_size_for,
    upsample_plain,
    upscale_fill,
)

NATIVE = 200  # UTKFace's own size
LOW = 64  # the shipped models' size
UPSCALERS = ("plain", "aggregation")
MEGAPIXELS = (1, 4, 12)


@dataclass
class Row:
    bin: str
    hole: float
    method: str
    upscale: str
    l1: float
    psnr: float
    ssim: float
    lpips: float
    sharpness: float
    ms: float


def utkface_held_out(num: int) -> np.ndarray:
    """uint8 ``[num, 200, 200, 3]``: the first ``num`` held-out UTKFace faces, as the files are."""
    names = split_files("utkface", "heldout")[:num]
    return np.stack([np.asarray(Image.open(source_dir("utkface") / n).convert("RGB")) for n in names])


def hole_sharpness(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    """Sharpness (variance of the Laplacian) of the output over that of the truth, inside the hole
    shrunk by one pixel; NaN where nothing of the hole is left."""
    inner = cv2.erode(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if inner.sum() < 2:
        return float("nan")
    return sharpness(out, inner) / max(sharpness(truth, inner), 1e-6)


def low_inputs(faces: np.ndarray, holes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The 64 px inputs of the inpainters (API conventions: [-1, 1] images, 1 = hole masks)."""
    pairs = [downsample_with_mask(f, h, (LOW, LOW)) for f, h in zip(faces, holes)]
    images = uint8_to_float(np.stack([p[0] for p in pairs]))
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))[:, None]
    return images, masks


def megapixel_timings(face: np.ndarray, mask_index_bin: int, seed: int, repeats: int) -> dict[int, float]:
    """ms of :func:`upscale_fill` on the face upscaled to ~1, 4, 12 MP (4:3), median of ``repeats``."""
    from inpainting.classical import inpaint_biharmonic

    times = {}
    for mp in MEGAPIXELS:
        w = int(round(np.sqrt(mp * 1e6 * 4 / 3)))
        h = int(round(w * 3 / 4))
        big = cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
        hole = cv2.resize(paired_masks(mask_index_bin, 1, 512, seed)[0, 0].numpy(), (w, h),
                          interpolation=cv2.INTER_NEAREST) > 0.5
        low, low_mask = downsample_with_mask(big, hole, low_size_for((h, w), LOW))
        filled = inpaint_biharmonic(uint8_to_float(low), torch.from_numpy(low_mask.astype(np.float32))[None, None])
        low_fill = ((filled[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).numpy()
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            upscale_fill(big, hole, low_fill)
            runs.append(time.perf_counter() - t)
        times[mp] = 1000 * float(np.median(runs))
    return times


def markdown(rows: list[Row]) -> str:
    lines = ["| mask bin | hole | method | upscaling | L1 | PSNR | SSIM | LPIPS | sharpness | ms/img |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.bin} | {r.hole:.3f} | {r.method} | {r.upscale} | {r.l1:.4f} | {r.psnr:.2f} | "
                     f"{r.ssim:.4f} | {r.lpips:.4f} | {r.sharpness:.3f} | {r.ms:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=10, help="faces per bin (default 10)")
    parser.add_argument("--bins", default=",".join(map(str, DEFAULT_BINS)),
                        help="irregular-12k bins, 1 = 10-20%% ... 5 = 50-60%% (default 1-5)")
    parser.add_argument("--methods", default="biharmonic,edgeconnect,glcic,glcic-refine", help="64 px inpainters")
    parser.add_argument("--seed", type=int, default=0, help="face-mask pairing seed (the protocol uses 0)")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per size (median)")
    parser.add_argument("--no-megapixels", action="store_true", help="skip the 1/4/12 MP timings")
    parser.add_argument("--example", default=None, help="save a before/after PNG of the first face here")
    args = parser.parse_args()

    methods = [as_variant(m) for m in args.methods.split(",")]
    bins = [int(b) for b in args.bins.split(",")]
    model = load_edgeconnect() if Method.EDGECONNECT in [v.method for v in methods] else None
    faces = utkface_held_out(args.num)
    truth = uint8_to_float(faces)
    # scores() compares with each sample's image; the mask is not used there.
    truth_samples = [Sample(str(i), t[None], torch.zeros(1, 1, *t.shape[-2:])) for i, t in enumerate(truth)]
    lpips = lpips_model("vgg")
    rows: list[Row] = []
    example: list[np.ndarray] = []
    for b in bins:
        lo, hi = IRREGULAR_BINS[b]
        label = f"{round(lo * 100)}-{round(hi * 100)}%"
        holes = paired_masks(b, len(faces), NATIVE, args.seed)[:, 0].numpy() > 0.5
        low_images, low_masks = low_inputs(faces, holes)
        for method in methods:
            low_samples = [Sample(str(i), im[None], m[None]) for i, (im, m) in enumerate(zip(low_images, low_masks))]
            filled = torch.cat(run_method(method, low_samples, model, args.batch)[0])
            low_fills = ((filled.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).numpy()
            for upscale in UPSCALERS:
                fn = upsample_plain if upscale == "plain" else upscale_fill
                outs, seconds = [], 0.0
                for face, hole, low_fill in zip(faces, holes, low_fills):
                    t = time.perf_counter()
                    outs.append(fn(face, hole, low_fill))
                    seconds += time.perf_counter() - t
                out = np.stack(outs)
                sharp = float(np.nanmean([hole_sharpness(o, f, h) for o, f, h in zip(out, faces, holes)]))
                metrics = scores(list(uint8_to_float(out).split(args.batch)), truth_samples, lpips, args.batch,
                                 torch.device("cpu"))
                rows.append(Row(label, float(holes.mean()), method.name, upscale, sharpness=sharp,
                                ms=1000 * seconds / len(faces), **metrics))
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
                if args.example and b == bins[-1]:
                    example.append(out[0])
        if args.example and b == bins[-1]:
            example = [np.where(holes[0][..., None], 255, faces[0]).astype(np.uint8)] + example + [faces[0]]
    print(f"\n{len(faces)} held-out UTKFace faces per bin at {NATIVE} px, filled at {LOW} px, pairing seed "
          f"{args.seed}, torch threads {torch.get_num_threads()}\n\n{markdown(rows)}")
    if not args.no_megapixels:
        times = megapixel_timings(faces[0], 3, args.seed, args.repeats)
        print("\n| frame | aggregation ms |\n|---|---:|")
        for mp, ms in times.items():
            print(f"| {mp} MP | {ms:.0f} |")
    if args.example:
        Image.fromarray(np.concatenate(example, axis=1)).save(args.example)
        print(f"\nexample (masked input, {' | '.join(f'{m.name} {u}' for m in methods for u in UPSCALERS)}, truth): "
              f"{args.example}")


if __name__ == "__main__":
    main()
