"""Compare the inversion methods on held-out faces (LPIPS-VGG, PSNR, SSIM, identity distance, s/image).

A thin caller of :mod:`ganbrush_compare.inversion` (``ganbrush compare inversion --held-out N``
runs the same protocol on any faces and checkpoint): every method under two budgets measured in
the same run, equal steps (``--steps`` per method; PTI gives a quarter to its pivot) and equal
wall time (``--seconds`` per image; steps set from each method's s/step and fixed cost, timed on
the first face). Images: the first ``--num`` held-out faces (alternating CelebA / UTKFace),
framed as the training data at the generator's resolution. Writes ``inversion.md``, ``.csv``,
``.json`` and ``inversion_grid.png`` into ``--out``, replacing an earlier run's.

    python benchmarks/inversion.py                       # shipped generator, 8 faces
    python benchmarks/inversion.py --num 2 --steps 20 --seconds 5   # smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_compare.inversion import compare_inversion, held_out  # noqa: E402
from ganbrush_compare.report import render, write_report  # noqa: E402
from inversion.project import METHODS  # noqa: E402
from stylegan_ops.checkpoints import load_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="default")
    parser.add_argument("--num", type=int, default=8, help="held-out faces")
    parser.add_argument("--steps", type=int, default=300, help="equal-steps budget per method")
    parser.add_argument("--seconds", type=float, default=60.0, help="equal-wall-time budget per image")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="out/bench-inversion", help="folder for the tables and the grid")
    args = parser.parse_args()

    torch.manual_seed(0)
    G = load_generator(args.generator)
    report = compare_inversion(G, held_out(args.num, G.img_resolution), args.methods, steps=args.steps,
                               seconds=args.seconds, generator_name=args.generator)
    written = write_report(report, args.out, force=True)
    print("\n" + render(report) + f"\nwrote {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
