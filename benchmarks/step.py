"""What speeds up a whole StyleGAN2 step on this machine: the training step and the inversion step.

Each row is one way of running the *same* step; all rows are measured in one run, interleaved
(round-robin over the rows, ``--reps`` rounds, median per row), so other load on the machine hits
every row alike. Speed-ups are over the first row (reference ops) of the same table.

- *training*: ``stylegan_ops.train.Trainer.train_step`` of the ``cpu64`` preset (batch 16,
  64 px) on random images, timed over ``--steps`` consecutive steps (16: one full cycle of the
  lazy regularisers, R1 every 16 steps and path length every 4), so the regularisers' share is in
  the number; with ``--disc projected`` the projected discriminator's step instead.
- *inversion*: one W+ step of :func:`inversion.project.invert` as it computes it: the synthesis
  forward + backward with the MSE + LPIPS-VGG loss, batch 1, on the shipped 64 px generator.

Rows: the pure-PyTorch reference ops; the compiled C++ ops (the default); then each change on
top of the compiled ops: ``batched`` modulated convolutions (:class:`stylegan_ops.networks.ModConv`),
``channels_last`` memory format, bf16 autocast on the CPU; then the combinations. ``--compile``
adds ``torch.compile`` of the discriminator and of the synthesis network (reference ops, forward
+ backward alone: a compiled graph cannot take the regularisers' double backward), with its
compile time.

    OMP_NUM_THREADS=1 python benchmarks/step.py                 # 1 thread, both tables
    python benchmarks/step.py --threads 2 --only training
    python benchmarks/step.py --compile --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylegan_ops.networks import ModConv, set_modconv  # noqa: E402
from stylegan_ops.ops import impl as ops_impl  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    impl: str = "cpp"
    modconv: ModConv = ModConv.GROUPED
    bf16: bool = False
    channels_last: bool = False
    bf16_lpips: bool = False  # inversion only: LPIPS-VGG under the autocast too


VARIANTS = (
    Variant("reference ops", impl="ref"),
    Variant("compiled ops"),
    Variant("+ batched modconv", modconv=ModConv.BATCHED),
    Variant("+ channels_last", channels_last=True),
    Variant("+ bf16 autocast", bf16=True),
    Variant("+ batched + bf16", modconv=ModConv.BATCHED, bf16=True),
)
INVERSION_VARIANTS = (*VARIANTS, Variant("+ batched + bf16, LPIPS in bf16 too", modconv=ModConv.BATCHED,
                                         bf16=True, bf16_lpips=True))


class RandomImages(torch.utils.data.Dataset):
    """Fixed random images ``[3, res, res]`` in [-1, 1] (a step's cost does not depend on pixels)."""

    def __init__(self, count: int, res: int) -> None:
        self.images = torch.rand(count, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _memory_format(module: torch.nn.Module, v: Variant) -> None:
    if v.channels_last:
        module.to(memory_format=torch.channels_last)


def training_step(v: Variant, run_dir: str, disc: str) -> Callable[[], None]:
    """One trainer per variant; the returned function takes one training step."""
    from stylegan_ops.train import PRESETS, TrainConfig, Trainer

    cfg = TrainConfig(**PRESETS["cpu64"], cpu_bf16=v.bf16, modconv=v.modconv.value,
                      **({"disc": disc} if disc != "stylegan2" else {}))
    trainer = Trainer(cfg, RandomImages(4 * cfg.batch, cfg.resolution), run_dir)
    _memory_format(trainer.G, v)
    _memory_format(trainer.D, v)

    def step() -> None:
        with ops_impl.preferred(v.impl):
            trainer.train_step()

    return step


def inversion_step(v: Variant) -> Callable[[], None]:
    """One W+ step of the inversion loop on the shipped generator (a held-out face as target)."""
    from ganbrush_core.faces import held_out_faces
    from ganbrush_core.metrics import lpips_model
    from stylegan_ops.checkpoints import load_generator

    G = load_generator("default").requires_grad_(False)
    set_modconv(G, v.modconv)
    _memory_format(G, v)
    perceptual = lpips_model("vgg")
    target = held_out_faces(1, G.img_resolution)
    ws = G.w_avg[None, None].repeat(1, G.num_ws, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=0.01)

    def step() -> None:
        with ops_impl.preferred(v.impl), torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16):
            img = G.synthesis(ws, noise_mode="const")
        img = img.float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16_lpips):
            distance = perceptual(img, target).float().sum()
        loss = (img - target).square().mean() + distance
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def compile_rows(reps: int) -> list[tuple[str, float, float]]:
    """(name, eager ms, compiled ms) for D and the synthesis network, fwd + bwd, reference ops."""
    from stylegan_ops.networks import Discriminator, Generator
    from stylegan_ops.train import PRESETS, TrainConfig

    cfg = TrainConfig(**PRESETS["cpu64"])
    G = Generator(cfg.generator_config())
    D = Discriminator(cfg.resolution, channels=G.cfg.channels)
    x = torch.randn(cfg.batch, 3, cfg.resolution, cfg.resolution, requires_grad=True)
    ws = G.mapping(torch.randn(cfg.batch, G.z_dim)).detach()
    rows = []
    for name, module, arg in (("D fwd+bwd", D, x), ("synthesis fwd+bwd", G.synthesis_network, ws)):
        with ops_impl.preferred("ref"):
            t = time.perf_counter()
            compiled = torch.compile(module)
            compiled(arg).sum().backward()
            compile_s = time.perf_counter() - t
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(reps):
                for key, fn in (("eager", module), ("compiled", compiled)):
                    t = time.perf_counter()
                    fn(arg).sum().backward()
                    times[key].append(time.perf_counter() - t)
        rows.append((f"{name} (compile {compile_s:.0f} s)", statistics.median(times["eager"]) * 1000,
                     statistics.median(times["compiled"]) * 1000))
    return rows


def measure(makers: dict[Variant, Callable[[], None]], calls: int, reps: int) -> dict[Variant, float]:
    """Median ms per call of each variant, interleaved rounds of ``calls`` calls each."""
    for step in makers.values():  # warm-up: first calls build caches and compile kernels
        step()
        step()
    times: dict[Variant, list[float]] = {v: [] for v in makers}
    for _ in range(reps):
        for v, step in makers.items():
            t = time.perf_counter()
            for _ in range(calls):
                step()
            times[v].append((time.perf_counter() - t) / calls)
    return {v: statistics.median(t) * 1000 for v, t in times.items()}


def print_table(title: str, ms: dict[Variant, float], images_per_call: int) -> None:
    base = next(iter(ms.values()))
    print(f"\n{title}\n\n| variant | ms / step | img/s | speed-up over reference ops |\n|---|---:|---:|---:|")
    for v, t in ms.items():
        print(f"| {v.name} | {t:.0f} | {images_per_call * 1000 / t:.1f} | {base / t:.2f}x |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["training", "inversion"], default=None)
    p.add_argument("--disc", default="stylegan2", help="training table: the discriminator (stylegan2|projected)")
    p.add_argument("--steps", type=int, default=16, help="training steps per timed round")
    p.add_argument("--inversion-steps", type=int, default=10, help="inversion steps per timed round")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds (the median is reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS or torch's)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f} "
          f"at the start; medians of {args.reps} interleaved rounds")
    t0 = time.perf_counter()
    if args.only in (None, "training"):
        with tempfile.TemporaryDirectory() as tmp:
            makers = {v: training_step(v, os.path.join(tmp, str(i)), args.disc) for i, v in enumerate(VARIANTS)}
            ms = measure(makers, args.steps, args.reps)
        print_table(f"Training step, cpu64 preset, batch 16, {args.disc} discriminator "
                    f"({args.steps} steps per round)", ms, 16)
    if args.only in (None, "inversion"):
        makers = {v: inversion_step(v) for v in INVERSION_VARIANTS}
        ms = measure(makers, args.inversion_steps, args.reps)
        print_table("Inversion W+ step (synthesis + MSE + LPIPS-VGG, forward + backward), shipped 64 px "
                    "generator, batch 1", ms, 1)
    if args.compile:
        print("\n| torch.compile (reference ops) | eager ms | compiled ms | speed-up |\n|---|---:|---:|---:|")
        for name, eager, compiled in compile_rows(args.reps):
            print(f"| {name} | {eager:.0f} | {compiled:.0f} | {eager / compiled:.2f}x |", flush=True)
    print(f"\n# {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
