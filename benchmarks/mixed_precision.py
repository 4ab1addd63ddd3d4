"""Mixed precision in the inversion loop: float32 vs autocast (bf16 on the CPU, fp16 on CUDA).

Two measurements, each alternating float32 and mixed precision so that other load on the machine
hits both alike:

- *timing*: median milliseconds of one W+ step (the generator's synthesis forward + backward,
  then with MSE + LPIPS-VGG as the inversion computes it), ``--reps`` of each;
- *quality*: final LPIPS / MSE of a full W+ inversion (``--steps``) of the first ``--faces``
  held-out faces, each face inverted in both precisions.

    python benchmarks/mixed_precision.py                              # shipped generator, 2 faces
    python benchmarks/mixed_precision.py --random 256 --faces 0 --reps 8   # timing only, 256 px
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.devices import add_device_argument, resolve_device  # noqa: E402
from ganbrush_core.faces import held_out_faces  # noqa: E402
from ganbrush_core.metrics import lpips_model  # noqa: E402
from inversion.project import invert  # noqa: E402
from stylegan_ops.checkpoints import load_generator  # noqa: E402
from stylegan_ops.networks import Generator, GeneratorConfig, channels_for  # noqa: E402


def step_ms(G: Generator, target: torch.Tensor, perceptual, device: torch.device, reps: int,
            with_lpips: bool) -> dict[bool, float]:
    """Median ms of one W+ step per precision (``True`` = mixed), interleaved."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    ws = G.w_avg[None, None].repeat(1, G.num_ws, 1).clone().requires_grad_(True)

    def step(mixed: bool) -> float:
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=mixed):
            img = G.synthesis(ws, noise_mode="const")
        img = img.float()
        loss = (img - target).square().mean() + (perceptual(img, target).sum() if with_lpips else 0)
        ws.grad = None
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    for _ in range(2):  # warm-up: first-call costs are not per-step costs
        step(False), step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for mixed in (False, True):
            times[mixed].append(step(mixed))
    return {mixed: statistics.median(t) * 1000 for mixed, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="default")
    parser.add_argument("--random", type=int, default=None, metavar="RES",
                        help="time a random generator of the official layout at RES px instead")
    parser.add_argument("--faces", type=int, default=2, help="held-out faces to invert (0: timing only)")
    parser.add_argument("--steps", type=int, default=300, help="W+ steps per inversion")
    parser.add_argument("--reps", type=int, default=30, help="timed steps per precision")
    add_device_argument(parser)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.random:
        torch.manual_seed(0)
        cfg = GeneratorConfig(img_resolution=args.random, z_dim=512, w_dim=512, mapping_layers=8,
                              channels=channels_for(args.random, 16384, 512))
        G = Generator(cfg).eval()
    else:
        G = load_generator(args.generator)
    G = G.to(device).requires_grad_(False)
    perceptual = lpips_model("vgg", device=device)
    lo = "fp16" if device.type == "cuda" else "bf16"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, {G.img_resolution} px")
    target = held_out_faces(max(args.faces, 1), G.img_resolution).to(device)
    for with_lpips, what in ((False, "synthesis fwd+bwd"), (True, "W+ step with LPIPS")):
        ms = step_ms(G, target[:1], perceptual, device, args.reps, with_lpips)
        print(f"{what}: fp32 {ms[False]:.1f} ms, {lo} {ms[True]:.1f} ms (medians of {args.reps})", flush=True)
    print("\n| face | precision | s / step | LPIPS | MSE |\n|---|---|---:|---:|---:|")
    for i in range(args.faces):
        for mixed in (False, True):
            t = time.perf_counter()
            r = invert(G, target[i : i + 1], steps=args.steps, perceptual=perceptual, w_avg_samples=2000,
                       mixed_precision=mixed)
            s = (time.perf_counter() - t) / args.steps
            print(f"| {i} | {lo if mixed else 'fp32'} | {s:.3f} | {r.final_losses['lpips']:.4f} | "
                  f"{r.final_losses['mse']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
