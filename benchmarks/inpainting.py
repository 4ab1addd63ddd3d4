"""Compare the learned inpainters (EdgeConnect; GLCIC and ganbrush's glcic-refine variant, each with
and without Poisson blending) with the classical ones on held-out faces x irregular-mask bins.

A thin caller of :mod:`ganbrush_compare.inpainting` (``ganbrush compare inpainting`` runs the
same protocol on any images, with irregular-mask bins or one's own masks). Protocol: the first
``--num`` held-out faces (alternating CelebA / UTKFace, framed as the training data, at
``--res``) x the irregular-12k mask bins 10-20% ... 50-60%. In each bin face ``i`` gets the mask
at position ``i`` of a permutation of that bin's 2000 masks drawn with ``--seed`` (0), so the
pairing is fixed and every method sees the same (face, mask) pairs. Masks are resized to the face
resolution with nearest neighbour; the table reports the hole ratio they really have.

Per bin and method, on the composited output (known pixels are the input's): L1 (mean absolute
error on [0, 1]), PSNR (dB), SSIM, LPIPS (VGG), FID against the same faces unmasked, and
milliseconds per image on this machine (the inpainting call only). FID of a few hundred images
is biased upward; it is comparable across the methods of one run, not with papers. With
``--out``, ``inpainting.md``, ``.csv``, ``.json`` and ``inpainting_grid.png`` are written there
(replacing an earlier run's).

    python benchmarks/inpainting.py                     # shipped models, 500 faces per bin
    python benchmarks/inpainting.py --num 16 --no-fid   # smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_compare.inpainting import (  # noqa: E402
    NO_POISSON,
    as_variant,
    compare_inpainting,
    held_out_images,
    irregular_pairs,
)
from ganbrush_compare.report import render, write_report  # noqa: E402
from inpainting.checkpoints import load_edgeconnect  # noqa: E402
from inpainting.inpaint import GLCIC_METHODS, Method, ready_methods  # noqa: E402

# Bins of the table: 10-20% ... 50-60% (bin 0, 1-10%, is left out as in the paper's table).
DEFAULT_BINS = (1, 2, 3, 4, 5)


def default_methods() -> list[str]:
    names = []
    for m in ready_methods():
        names += [m.value, m.value + NO_POISSON] if m in GLCIC_METHODS else [m.value]
    return names


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=500, help="faces per bin (default 500)")
    parser.add_argument("--res", type=int, default=64, help="face resolution (the shipped model's is 64)")
    parser.add_argument("--bins", default=",".join(map(str, DEFAULT_BINS)),
                        help="irregular-12k bins, 0 = 1-10%% ... 5 = 50-60%% (default 1-5)")
    parser.add_argument("--methods", default=",".join(default_methods()),
                        help="comma-separated (default: every method with shipped weights, and GLCIC also without "
                             "Poisson blending)")
    parser.add_argument("--weights", nargs=2, metavar=("EDGE", "INPAINT"), default=None,
                        help="EdgeConnect generators (default: the shipped model)")
    parser.add_argument("--seed", type=int, default=0, help="face-mask pairing seed (the protocol uses 0)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--no-fid", action="store_true", help="skip FID (Inception is the slow part)")
    parser.add_argument("--out", default=None, help="folder for the tables and an example grid")
    args = parser.parse_args()

    methods = [as_variant(m) for m in args.methods.split(",")]
    use_edgeconnect = Method.EDGECONNECT in [v.method for v in methods]
    model = load_edgeconnect(*(args.weights or (None, None))) if use_edgeconnect else None
    faces = held_out_images(args.num, args.res)
    pairs = irregular_pairs(faces, [int(b) for b in args.bins.split(",")], args.seed)
    title = (f"{len(faces)} held-out faces per bin at {args.res} px, pairing seed {args.seed}, "
             f"torch threads {torch.get_num_threads()}")
    report = compare_inpainting(pairs, methods, model, args.batch, fid=not args.no_fid, title=title)
    print("\n" + render(report))
    if args.out:
        print(f"wrote {', '.join(map(str, write_report(report, args.out, force=True)))}")


if __name__ == "__main__":
    main()
