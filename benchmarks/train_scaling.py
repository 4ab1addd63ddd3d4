"""Training throughput for 1, 2, ... ranks: the same trainer and global batch under ``torchrun``.

Each world size runs in its own ``torchrun --standalone`` (one machine): every rank builds the
trainer on its device, takes ``--warmup`` steps, then ``--steps`` timed steps between two
barriers; rank 0 reports global images per second. The table gives each world size's rate, the
speed-up over the first world size measured in the same run, and the scaling efficiency
(speed-up / ranks).

    python benchmarks/train_scaling.py                          # CPU: 1 and 2 ranks, StyleGAN cpu64
    python benchmarks/train_scaling.py --trainer edgeconnect    # EdgeConnect edge stage, cpu preset
    python benchmarks/train_scaling.py --device cuda --ranks 1,2,4,8 --preset gpu64 --batch 64

On the CPU a world of W ranks gets ``cores / W`` threads per rank (``--threads`` overrides), so
each row uses the same cores. Data are random images at the preset's resolution (throughput does
not depend on the pixels); no files are written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core import distributed  # noqa: E402

RESULT = "RESULT "  # prefix of rank 0's result line


class RandomImages(torch.utils.data.Dataset):
    """``count`` fixed random images ``[3, res, res]`` in [-1, 1] (StyleGAN), or EdgeConnect's
    sample dict (``image``, ``gray``, ``edges``) when ``edgeconnect``."""

    def __init__(self, count: int, res: int, edgeconnect: bool) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, res, res, generator=g)
        self.edges = (torch.rand(count, 1, res, res, generator=g) < 0.1).float()
        self.edgeconnect = edgeconnect

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if not self.edgeconnect:
            return self.images[i] * 2 - 1
        return {"image": self.images[i], "gray": self.images[i].mean(0, keepdim=True), "edges": self.edges[i]}


def _trainer(args: argparse.Namespace, device: torch.device, run_dir: str):
    batch = {"batch": args.batch} if args.batch else {}
    if args.trainer == "stylegan":
        from stylegan_ops.train import PRESETS, TrainConfig, Trainer

        cfg = TrainConfig(**{**PRESETS[args.preset or "cpu64"], **batch})
        data = RandomImages(max(4 * cfg.batch, 64), cfg.resolution, edgeconnect=False)
        return Trainer(cfg, data, run_dir, device), cfg.batch, cfg.resolution
    from inpainting.train import PRESETS, Stage, TrainConfig, Trainer

    cfg = TrainConfig(stage=Stage.EDGE, **{**PRESETS[args.preset or "cpu"], **batch})
    data = RandomImages(max(4 * cfg.batch, 64), args.res, edgeconnect=True)
    return Trainer(cfg, data, run_dir, device), cfg.batch, args.res


def worker(args: argparse.Namespace) -> None:
    """One rank: warm up, time ``args.steps`` steps; rank 0 prints the result line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    world = distributed.setup(args.device)
    device = world.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, batch, res = _trainer(args, device, run_dir)
        for _ in range(args.warmup):
            trainer.train_step()
        distributed.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        distributed.barrier()
        seconds = time.perf_counter() - t0
    if world.main:
        print(RESULT + json.dumps({"ranks": world.size, "batch": batch, "res": res, "seconds": seconds,
                                   "threads": torch.get_num_threads(),
                                   "img_s": args.steps * batch / seconds}), flush=True)
    distributed.shutdown()


def launch(args: argparse.Namespace, ranks: int) -> dict:
    threads = args.threads or (max(1, (os.cpu_count() or 1) // ranks) if args.device == "cpu" else 0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
           str(Path(__file__).resolve()), "--worker", "--trainer", args.trainer, "--device", args.device,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--res", str(args.res)]
    cmd += (["--preset", args.preset] if args.preset else []) + (["--batch", str(args.batch)] if args.batch else [])
    cmd += ["--threads", str(threads)] if threads else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{ranks} ranks failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainer", choices=["stylegan", "edgeconnect"], default="stylegan")
    p.add_argument("--preset", default=None, help="trainer preset (default: cpu64 / cpu)")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the preset's)")
    p.add_argument("--res", type=int, default=64, help="EdgeConnect image size (StyleGAN: the preset's)")
    p.add_argument("--ranks", default="1,2", help="comma-separated world sizes, e.g. 1,2,4,8")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--steps", type=int, default=10, help="timed steps per world size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads per rank (CPU default: cores / ranks)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    sizes = [int(r) for r in args.ranks.split(",")]
    print(f"# {args.trainer} on {args.device}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps, load average {os.getloadavg()[0]:.1f} "
          "at the start")
    print(f"{'ranks':>5} {'global batch':>12} {'per rank':>8} {'threads':>7} {'res':>4} {'img/s':>8} "
          f"{'speed-up':>8} {'efficiency':>10}")
    base = None
    for ranks in sizes:
        r = launch(args, ranks)
        base = base or r["img_s"]
        speed = r["img_s"] / base
        print(f"{r['ranks']:>5} {r['batch']:>12} {r['batch'] // r['ranks']:>8} {r['threads']:>7} {r['res']:>4} "
              f"{r['img_s']:>8.1f} {speed:>8.2f} {speed / (ranks / sizes[0]):>10.0%}", flush=True)


if __name__ == "__main__":
    main()
