"""Compare the inversion methods on held-out faces (LPIPS-VGG, PSNR, SSIM, identity distance, s/image).

For each method (``w+``, ``w``, ``pti``) and two budgets measured in the same run:

- *equal steps*: every method gets ``--steps`` optimisation steps in total (PTI splits them
  between the pivot and the tuning phase);
- *equal wall time*: every method gets ``--seconds`` per image; steps are set from each method's
  seconds per step, measured here on the first image.

PTI gives a quarter of either budget to its pivot and the rest to tuning the generator, where
it gains most (the paper: 450 pivot and 350 tuning steps at 1024 px, without a time limit).

Reported per row (means over the images): LPIPS (VGG), PSNR (dB), SSIM, identity distance
(dlib face descriptor, lower is better; same person usually < 0.6), seconds per image on this
machine, steps. Images: the first ``--num`` held-out faces (alternating CelebA / UTKFace), framed
as the training data and resized to the generator's resolution.

    python benchmarks/inversion.py                       # shipped generator, 8 faces
    python benchmarks/inversion.py --num 2 --steps 20 --seconds 5   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.faces import held_out_faces  # noqa: E402
from ganbrush_core.images import image_grid, to_uint8  # noqa: E402
from ganbrush_core.metrics import lpips_model, psnr, ssim  # noqa: E402
from inversion.identity import face_descriptor, identity_distance  # noqa: E402
from inversion.project import METHODS, invert  # noqa: E402
from stylegan_ops.checkpoints import load_generator  # noqa: E402


@dataclass
class Row:
    budget: str
    method: str
    steps: int
    lpips: float
    psnr: float
    ssim: float
    identity: float
    seconds: float


def _timed(G, image: torch.Tensor, perceptual, **kwargs) -> float:
    t = time.perf_counter()
    invert(G, image, perceptual=perceptual, w_avg_samples=2000, **kwargs)
    return time.perf_counter() - t


def seconds_per_step(G, image: torch.Tensor, method: str, perceptual) -> tuple[float, float]:
    """(s/step of the W or W+ phase, s/step of the PTI tuning phase): the difference between runs
    of 2k and k steps, so fixed costs (w statistics, setup) do not count as per-step time."""
    k = 8
    phase = {"method": "w+"} if method == "w+" else {"method": "w", "optimize_noise": method == "w"}
    _timed(G, image, perceptual, steps=k, **phase)  # warm-up: first-call costs are not per-step costs
    first = (_timed(G, image, perceptual, steps=2 * k, **phase) - _timed(G, image, perceptual, steps=k, **phase)) / k
    tune = 0.0
    if method == "pti":
        _timed(G, image, perceptual, method="pti", steps=1, pti_steps=k)
        tune = (_timed(G, image, perceptual, method="pti", steps=1, pti_steps=2 * k)
                - _timed(G, image, perceptual, method="pti", steps=1, pti_steps=k)) / k
    return max(first, 1e-3), max(tune, 1e-3)


PTI_PIVOT_SHARE = 0.25


def plan_steps(method: str, budget: str, steps: int, seconds: float, speed: tuple[float, float]) -> dict:
    if budget == "steps":
        pivot = max(1, round(steps * PTI_PIVOT_SHARE))
        return {"steps": pivot, "pti_steps": steps - pivot} if method == "pti" else {"steps": steps}
    if method == "pti":
        return {"steps": max(1, int(seconds * PTI_PIVOT_SHARE / speed[0])),
                "pti_steps": max(1, int(seconds * (1 - PTI_PIVOT_SHARE) / speed[1]))}
    return {"steps": max(1, int(seconds / speed[0]))}


def evaluate(G, images: torch.Tensor, target_ids: list[np.ndarray], method: str, plan: dict,
             perceptual) -> tuple[dict, torch.Tensor]:
    per_image = []
    recons = []
    for image, target_id in zip(images, target_ids):
        result = invert(G, image[None], method=method, perceptual=perceptual, **plan)
        recon = result.reconstruction
        target = image[None]
        with torch.no_grad():
            per_image.append({
                "lpips": float(perceptual(recon, target)), "psnr": float(psnr(recon, target)),
                "ssim": float(ssim(recon, target)),
                "identity": identity_distance(to_uint8(recon)[0], target_id),
                "seconds": result.seconds, "steps": result.steps})
        recons.append(recon)
    means = {k: float(np.mean([r[k] for r in per_image])) for k in per_image[0]}
    return means, torch.cat(recons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="default")
    parser.add_argument("--num", type=int, default=8, help="held-out faces")
    parser.add_argument("--steps", type=int, default=300, help="equal-steps budget per method")
    parser.add_argument("--seconds", type=float, default=60.0, help="equal-wall-time budget per image")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="out/bench-inversion", help="folder for the JSON table and the grid")
    args = parser.parse_args()

    torch.manual_seed(0)
    G = load_generator(args.generator)
    perceptual = lpips_model("vgg")
    images = held_out_faces(args.num, G.img_resolution)
    target_ids = [face_descriptor(face) for face in to_uint8(images)]  # described once, not per method
    speeds = {m: seconds_per_step(G, images[:1], m, perceptual) for m in args.methods}
    rows, grids = [], {"target": images}
    for budget in ("steps", "seconds"):
        for method in args.methods:
            plan = plan_steps(method, budget, args.steps, args.seconds, speeds[method])
            means, recons = evaluate(G, images, target_ids, method, plan, perceptual)
            rows.append(Row(budget, method, int(means["steps"]), means["lpips"], means["psnr"], means["ssim"],
                            means["identity"], means["seconds"]))
            grids[f"{method} ({budget})"] = recons
            r = rows[-1]
            print(f"  {budget:7s} {method:3s}: LPIPS {r.lpips:.4f} PSNR {r.psnr:.2f} SSIM {r.ssim:.4f} "
                  f"id {r.identity:.3f} {r.seconds:.1f} s/img", flush=True)

    print(f"\nInversion on {args.num} held-out faces, generator {args.generator} ({G.img_resolution} px), "
          f"torch threads {torch.get_num_threads()}")
    print("| budget | method | steps | LPIPS (VGG) | PSNR (dB) | SSIM | identity dist | s / image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        budget = f"{args.steps} steps" if r.budget == "steps" else f"{args.seconds:g} s"
        print(f"| {budget} | {r.method} | {r.steps} | {r.lpips:.4f} | {r.psnr:.2f} | {r.ssim:.4f} | "
              f"{r.identity:.3f} | {r.seconds:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inversion.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    grid = torch.cat(list(grids.values()))
    image_grid(grid, ncols=args.num).save(out / "inversion_grid.png")
    print(f"rows: target, then {', '.join(list(grids)[1:])}; wrote {out / 'inversion.json'} and "
          f"{out / 'inversion_grid.png'}")


if __name__ == "__main__":
    main()
