"""Where inpainters go wrong: the mean absolute error of each method by a hole pixel's distance
to the nearest known pixel, per mask bin, on the held-out faces and irregular masks of
``benchmarks/inpainting.py`` (same pairing). Near the border a fill can copy from its neighbours;
deep in the hole it has to invent. A method that is worse than the classical fills right at
the border loses by level and blur, not by missing structure.

    python benchmarks/inpainting_errors.py --num 300 --out runs/inpainting-errors

prints one table per bin (rows: methods; columns: distance rings in px at 64 px) and, with
``--out``, writes ``errors.md`` and ``error_maps.png`` (mean |error| of each method over the bin's
faces, one row per bin; brighter is worse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.ndimage import distance_transform_edt  # noqa: E402

from ganbrush_compare.inpainting import as_variant, held_out_images, irregular_pairs, run_method  # noqa: E402
from inpainting import load_edgeconnect  # noqa: E402
from inpainting.inpaint import Method  # noqa: E402

#: Distance rings (px at 64 px, to the nearest known pixel): [1, 2), [2, 3), [3, 5), [5, inf).
RINGS = ((1, 2), (2, 3), (3, 5), (5, float("inf")))


def ring_errors(out: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Mean |out - truth| (over [0, 1] RGB) of the hole pixels of each ring of :data:`RINGS`,
    pooled over the batch ``[N, 3, H, W]`` in [-1, 1] (masks ``[N, 1, H, W]``, 1 = hole)."""
    err = ((out - truth).abs() / 2).mean(1).numpy()  # [N, H, W]
    dist = np.stack([distance_transform_edt(m[0].numpy() > 0.5) for m in mask])
    return np.array([err[(dist >= lo) & (dist < hi)].mean() for lo, hi in RINGS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=300, help="faces per bin (default 300)")
    parser.add_argument("--bins", default="2,3,4,5", help="irregular-12k bins (default 2-5: 20-30%% ... 50-60%%)")
    parser.add_argument("--methods", default="biharmonic,ns,edgeconnect,glcic,glcic-no-poisson,glcic-refine",
                        help="comma-separated inpainting methods")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", default=None, help="folder for errors.md and error_maps.png")
    args = parser.parse_args()

    variants = [as_variant(m) for m in args.methods.split(",")]
    model = load_edgeconnect() if any(v.method is Method.EDGECONNECT for v in variants) else None
    pairs = irregular_pairs(held_out_images(args.num, 64), [int(b) for b in args.bins.split(",")])
    header = "| bin | method | " + " | ".join(f"{lo}-{hi} px" for lo, hi in RINGS) + " |"
    lines = [header, "|---|---|" + "---:|" * len(RINGS)]
    maps = []
    for label, samples in pairs.items():
        truth = torch.cat([s.image for s in samples])
        mask = torch.cat([s.mask for s in samples])
        row = []
        for v in variants:
            outs, _ = run_method(v, samples, model, args.batch)
            out = torch.cat(outs)
            errors = ring_errors(out, truth, mask)
            lines.append(f"| {label} | {v.name} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")
            row.append(((out - truth).abs() / 2).mean((0, 1)).numpy())
        maps.append(row)
    table = "\n".join(lines)
    print(table)
    if args.out:
        from PIL import Image

        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "errors.md").write_text(f"{args.num} held-out faces per bin, 64 px, pairing seed 0; columns: "
                                           "mean |error| ([0, 1] RGB) by distance to the nearest known pixel\n\n"
                                           + table + "\n\nmethods (columns of error_maps.png): "
                                           + ", ".join(v.name for v in variants) + "\n")
        grid = np.concatenate([np.concatenate(r, axis=1) for r in maps], axis=0)
        image = (np.clip(grid / max(grid.max(), 1e-6), 0, 1) * 255).astype(np.uint8)
        Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(
            out_dir / "error_maps.png")
        print(f"wrote {out_dir / 'errors.md'}, {out_dir / 'error_maps.png'}")


if __name__ == "__main__":
    main()
