"""Speed of the shipped encoder on this CPU: ms per face for one forward pass (face -> W+) and for
the pass plus the generator's render, at batch 1, median of ``--reps`` runs after a warm-up, for
each torch thread count asked for.

    python benchmarks/encoder.py                 # 1 and 2 threads, 30 reps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.faces import held_out_faces  # noqa: E402
from inversion.encoder import encode, load_encoder  # noqa: E402
from stylegan_ops.checkpoints import load_generator  # noqa: E402


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    G = load_generator("default")
    E = load_encoder("default", G)
    face = held_out_faces(1, G.img_resolution)
    print("| torch threads | encoder (ms / face) | encoder + render (ms / face) |")
    print("|---:|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        with torch.no_grad():
            enc = median_ms(lambda: encode(E, face), args.reps)
            full = median_ms(lambda: G.synthesis(encode(E, face)), args.reps)
        print(f"| {threads} | {enc:.1f} | {full:.1f} |")


if __name__ == "__main__":
    main()
