"""``ganbrush`` subcommands of this package: ``ops info``, ``ops build``, ``ops selftest``, ``convert``,
``sample``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganbrush_core.checks import check_float
from ganbrush_core.devices import add_device_argument
from ganbrush_core.io import refuse_overwrite
from stylegan_ops.discriminators import DiscKind
from stylegan_ops.networks import ModConv
from stylegan_ops.train import PROJECTED_D_LR


def _ops_info(args: argparse.Namespace) -> int:
    import torch

    from ganbrush_core.paths import ganbrush_home
    from stylegan_ops.ops import build

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), cache {ganbrush_home() / 'ops'}")
    print(f"{'impl':<6} {'status':<12} detail")
    print(f"{'ref':<6} {'available':<12} pure PyTorch, any device (the test oracle)")
    for kind in build.KINDS:
        status, detail = "unavailable", build.missing_prerequisite(kind)
        if detail is None:
            try:
                status, detail = "available", f"built in {Path(build.load(kind).__file__).parent}, self-check passed"
            except build.OpsBuildError as e:
                detail = str(e)
        print(f"{kind:<6} {status:<12} {detail}")
    return 0


def _ops_build(args: argparse.Namespace) -> int:
    from stylegan_ops.ops import build

    kinds = build.KINDS if args.kind == "all" else (args.kind,)
    failed = False
    for kind in kinds:
        reason = build.missing_prerequisite(kind)
        if reason is not None:
            print(f"{kind}: skipped ({reason})")
            failed |= args.kind != "all"
            continue
        print(f"{kind}: building (first build takes a while) ...", flush=True)
        module = build.load(kind)
        print(f"{kind}: ok ({Path(module.__file__).parent})")
    return 1 if failed else 0


def _ops_selftest(args: argparse.Namespace) -> int:
    from stylegan_ops.ops import build

    if args.impl:
        reason = build.missing_prerequisite(args.impl)
        if reason is not None:
            raise build.OpsBuildError(f"cannot self-check the {args.impl} ops: {reason}")
        kinds = [args.impl]
    else:
        reasons = {kind: build.missing_prerequisite(kind) for kind in build.KINDS}
        kinds = [kind for kind, reason in reasons.items() if reason is None]
        if not kinds:
            raise build.OpsBuildError("nothing to self-check: " + "; ".join(f"{k}: {r}" for k, r in reasons.items()))
    failed = False
    for kind in kinds:
        print(f"{kind}: checking against ref (building first if needed) ...", flush=True)
        verdict = build.verify(kind, rerun=True)
        print(f"{kind}: {'passed' if verdict.passed else 'FAILED'}, {verdict.checks} checks in "
              f"{verdict.seconds:.2f} s on {verdict.device}")
        for line in ([verdict.error] if verdict.error else []) + [c.describe() for c in verdict.failures[:10]]:
            print(f"  {line}")
        if verdict.worst is not None:
            print(f"  worst: {verdict.worst.describe()}")
        print(f"  verdict recorded in {build.verdict_path(kind)}")
        failed |= not verdict.passed
    return 1 if failed else 0


def _convert(args: argparse.Namespace) -> int:
    import torch

    from stylegan_ops.checkpoints import load_generator, save_generator

    dst = Path(args.dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"{dst}: the destination must end in .safetensors")
    refuse_overwrite(dst, args.force)
    G = load_generator(args.src)
    save_generator(G, dst, dtype=torch.float16 if args.fp16 else None, metadata={"converted_from": Path(args.src).name})
    cfg = G.cfg
    print(f"wrote {dst}: {cfg.img_resolution}px, z {cfg.z_dim}, w {cfg.w_dim}, {cfg.mapping_layers} mapping layers")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch

    from ganbrush_core.images import save_image_grid
    from stylegan_ops.checkpoints import load_generator

    out = Path(args.out)
    refuse_overwrite(out, args.force)
    G = load_generator(args.generator, device=args.device)
    # z drawn on the CPU: the same samples on every device.
    z = torch.randn(args.num, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = G(z.to(G.w_avg.device), truncation_psi=args.truncation, noise_mode="const").cpu()
    save_image_grid(images, out)
    print(f"wrote {out} ({args.num} samples, seed {args.seed}, truncation {args.truncation})")
    return 0


def _train_stylegan(args: argparse.Namespace) -> int:
    import dataclasses

    from ganbrush_core import distributed
    from ganbrush_core.faces import FaceDataset
    from stylegan_ops.train import PRESETS, TrainConfig, train

    if args.minutes is not None:
        check_float("--minutes", args.minutes, 0.0, 1e6, lo_open=True)
    dataset = FaceDataset(args.data, xflip=True)
    overrides = {k: v for k, v in (("batch", args.batch), ("seed", args.seed), ("disc", args.disc),
                                   ("d_lr", args.d_lr), ("modconv", args.modconv)) if v is not None}
    if args.cpu_bf16:
        overrides["cpu_bf16"] = True
    cfg = TrainConfig(**{**PRESETS[args.preset], **overrides})
    res = dataset[0].shape[-1]
    if res != cfg.resolution:
        cfg = dataclasses.replace(cfg, resolution=res)
    trainer = train(cfg, dataset, args.out, kimg=args.kimg, device=args.device, resume_from=args.resume,
                    minutes=args.minutes)
    if not distributed.current().main:  # under torchrun rank 0 alone reports
        return 0
    print(f"{args.out}: {trainer.images_seen / 1000:.1f} kimg, {trainer.step} steps; "
          f"EMA generator in {Path(args.out) / 'generator_ema.safetensors'}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from ganbrush_core.training import pack_run

    files = pack_run(args.run, args.out, max_file_mb=args.max_file_mb, force=args.force)
    total = sum(p.stat().st_size for p in files) / 2**20
    print(f"wrote {len(files)} files ({total:.1f} MB) to {args.out}; continue with --resume {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add this package's commands; returns the ``train`` group so other packages add their trainers."""
    ops = sub.add_parser("ops", help="compiled StyleGAN ops: build them or show what is available")
    ops_sub = ops.add_subparsers(dest="ops_command", required=True)
    info = ops_sub.add_parser("info", help="which implementations (ref, cpp, cuda) are available, and why not")
    info.set_defaults(func=_ops_info)
    b = ops_sub.add_parser("build", help="precompile the ops now instead of on first use")
    b.add_argument("--kind", choices=["cpp", "cuda", "all"], default="all")
    b.set_defaults(func=_ops_build)
    st = ops_sub.add_parser("selftest", help="check the compiled ops against ref here; record the verdict")
    st.add_argument("--impl", choices=["cpp", "cuda"], default=None,
                    help="which build to check (default: every one that can be built here)")
    st.set_defaults(func=_ops_selftest)

    conv = sub.add_parser("convert", help="convert a rosinality .pt or NVIDIA .pkl generator to .safetensors")
    conv.add_argument("src", help="checkpoint to read (.safetensors, rosinality .pt, NVIDIA .pkl)")
    conv.add_argument("dst", help="ganbrush .safetensors file to write")
    conv.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    conv.add_argument("--force", action="store_true", help="overwrite dst if it exists")
    conv.set_defaults(func=_convert)

    tr = sub.add_parser("train", help="train models")
    tr_sub = tr.add_subparsers(dest="train_command", required=True)
    sg = tr_sub.add_parser("stylegan", help="train a StyleGAN2 generator on a packed face dataset")
    sg.add_argument("--data", required=True, help="dataset folder from `ganbrush data faces`")
    sg.add_argument("--out", required=True, help="run folder (checkpoints, samples, logs)")
    sg.add_argument("--kimg", type=float, required=True, help="train until this many thousand images were shown")
    sg.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out)")
    sg.add_argument("--preset", default="cpu64", choices=["tiny", "cpu64", "gpu64"])
    sg.add_argument("--batch", type=int, default=None)
    sg.add_argument("--seed", type=int, default=None)
    sg.add_argument("--minutes", type=float, default=None,
                    help="also stop after this many minutes of this call (equal-time comparisons)")
    sg.add_argument("--disc", choices=[k.value for k in DiscKind], default=None,
                    help="discriminator: stylegan2 (logistic loss, R1) or projected (Projected GAN on "
                         "frozen VGG16 features, hinge loss); default stylegan2")
    sg.add_argument("--d-lr", type=float, default=None,
                    help=f"discriminator Adam rate (default: the G rate for stylegan2, {PROJECTED_D_LR} for projected)")
    sg.add_argument("--modconv", choices=[m.value for m in ModConv], default=None,
                    help="how G's modulated convs compute (same result; batched is faster on CPUs, "
                         "see benchmarks/step.py); default batched")
    sg.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU (CUDA always uses it)")
    add_device_argument(sg)
    sg.set_defaults(func=_train_stylegan)

    pk = tr_sub.add_parser("pack", help="copy a run's resumable state in half precision, small enough to commit "
                                        "(files <= 16 MB); continue it with --resume DEST")
    pk.add_argument("run", help="run folder of any ganbrush trainer")
    pk.add_argument("--out", required=True, help="folder to write (config.json, log.jsonl, checkpoint.packed/)")
    pk.add_argument("--max-file-mb", type=float, default=16.0)
    pk.add_argument("--force", action="store_true", help="overwrite an existing pack in --out")
    pk.set_defaults(func=_pack)

    s = sub.add_parser("sample", help="write a grid of random samples from a generator")
    s.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--num", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = none)")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_device_argument(s)
    s.set_defaults(func=_sample)
    return tr_sub
