"""Benchmark the compiled StyleGAN2 ops against the pure-PyTorch reference.

Prints one table row per (op, shape, pass, impl): milliseconds per call (median over repeats
after warm-up) and the speed-up over ``ref`` measured in the same run, then the geometric-mean
speed-up on the shapes that dominate a 256 px generator step.

    python benchmarks/ops.py            # CPU: ref vs cpp
    python benchmarks/ops.py --quick    # fewer shapes and repeats (smoke test)
    python benchmarks/ops.py --device cuda   # ref vs cuda

Shapes follow a StyleGAN2 config at batch 8: bias_act as in the synthesis layers (lrelu, bias,
gain sqrt(2), clamp 256), the [1, 3, 3, 1] blur after each up-convolution (input 3 px larger
than the output, gain 4), upsample2d of the 3-channel toRGB skip images, and downsample2d as in
the discriminator's residual blocks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylegan_ops.ops import build  # noqa: E402
from stylegan_ops.ops.bias_act import bias_act  # noqa: E402
from stylegan_ops.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d  # noqa: E402

BATCH = 8


@dataclass(frozen=True)
class Case:
    op: str
    shape: tuple[int, ...]
    # make(device, impl) -> (inputs needing grad, function of those inputs)
    make: Callable[[torch.device, str], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]]
    dominant: bool = False  # part of the 256 px generator-step summary


def bias_act_case(c: int, res: int, dominant=False) -> Case:
    shape = (BATCH, c, res, res)

    def make(device, impl):
        x = torch.randn(shape, device=device)
        b = torch.randn(c, device=device)
        return [x, b], lambda: bias_act(x, b, act="lrelu", clamp=256.0, impl=impl)

    return Case("bias_act lrelu", shape, make, dominant)


def blur_case(c: int, res: int, dominant=False) -> Case:
    # conv2d_resample(up=2): the transposed conv output (res + 3) is blurred down to res.
    shape = (BATCH, c, res + 3, res + 3)

    def make(device, impl):
        x = torch.randn(shape, device=device)
        f = setup_filter([1, 3, 3, 1], device=device)
        return [x], lambda: upfirdn2d(x, f, gain=4, impl=impl)

    return Case("filter2d 4x4", shape, make, dominant)


def upsample_case(res: int, dominant=False) -> Case:
    shape = (BATCH, 3, res // 2, res // 2)

    def make(device, impl):
        x = torch.randn(shape, device=device)
        f = setup_filter([1, 3, 3, 1], device=device)
        return [x], lambda: upsample2d(x, f, impl=impl)

    return Case("upsample2d x2", shape, make, dominant)


def downsample_case(c: int, res: int) -> Case:
    shape = (BATCH, c, res, res)

    def make(device, impl):
        x = torch.randn(shape, device=device)
        f = setup_filter([1, 3, 3, 1], device=device)
        return [x], lambda: downsample2d(x, f, impl=impl)

    return Case("downsample2d /2", shape, make)


def cases(quick: bool) -> list[Case]:
    # (channels, resolution) of a 256 px StyleGAN2 synthesis network at batch 8.
    layers = [(512, 8), (512, 32), (256, 64), (128, 128), (64, 256)]
    if quick:
        layers = [(512, 8), (128, 128)]
    out = [bias_act_case(c, r, dominant=r >= 128) for c, r in layers]
    out += [blur_case(c, r, dominant=r >= 128) for c, r in layers]
    out += [upsample_case(r, dominant=r >= 128) for _, r in layers]
    disc = [(64, 256), (128, 128), (256, 64), (512, 32)] if not quick else [(128, 128)]
    out += [downsample_case(c, r) for c, r in disc]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, budget_s: float
) -> dict[str, float]:
    """Median milliseconds per call of each function after one warm-up call. The functions
    are timed in alternation (ref, cpp, ref, cpp, ...) so that a load change on a shared
    machine hits all of them alike and the speed-up stays meaningful."""
    for fn in fns.values():
        fn()  # warm-up: builds / loads the extension, fills allocator caches
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for i in range(repeats):
        if i >= 3 and time.perf_counter() - start > budget_s:
            break
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_pass(case: Case, device: torch.device, impl: str, backward: bool):
    inputs, op = case.make(device, impl)
    if not backward:

        def fn():
            with torch.no_grad():
                return op()

        return fn
    for t in inputs:
        t.requires_grad_(True)
    dy = torch.randn_like(op().detach())

    def fn():
        for t in inputs:
            t.grad = None
        op().backward(dy)

    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--only", default="", help="run only ops whose name contains this")
    args = parser.parse_args()

    device = torch.device(args.device)
    compiled = "cpp" if device.type == "cpu" else "cuda"
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    t0 = time.perf_counter()
    build.load(compiled)
    print(
        f"{compiled} extension ready in {time.perf_counter() - t0:.1f} s; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
    )
    repeats = args.repeats or (3 if args.quick else 7)
    budget = 0.5 if args.quick else 1.5

    header = f"{'op':<16} {'shape':<20} {'pass':<8} {'impl':<5} {'ms':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    dominant_speedups = []
    for case in [c for c in cases(args.quick) if args.only in c.op]:
        shape = "x".join(map(str, case.shape))
        for backward in (False, True):
            pass_name = "fwd+bwd" if backward else "fwd"
            torch.manual_seed(0)
            fns = {impl: run_pass(case, device, impl, backward) for impl in ("ref", compiled)}
            ms = time_ms(fns, device, repeats, budget)
            speed_up = ms["ref"] / ms[compiled]
            if case.dominant:
                dominant_speedups.append(speed_up)
            print(f"{case.op:<16} {shape:<20} {pass_name:<8} {'ref':<5} {ms['ref']:9.3f} {'':>9}")
            print(
                f"{case.op:<16} {shape:<20} {pass_name:<8} {compiled:<5} {ms[compiled]:9.3f} {speed_up:8.2f}x",
                flush=True,
            )
    if dominant_speedups:
        gmean = math.exp(sum(map(math.log, dominant_speedups)) / len(dominant_speedups))
        print(
            f"\ngeometric-mean speed-up of {compiled} over ref on the 256 px generator-step shapes "
            f"(bias_act / filter2d / upsample2d at 128-256 px, fwd and fwd+bwd, "
            f"{len(dominant_speedups)} measurements): {gmean:.2f}x"
        )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
