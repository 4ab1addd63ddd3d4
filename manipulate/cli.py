"""``ganbrush directions``: compute latent directions for a generator and save them;
``ganbrush train attributes``: train the attribute classifier that InterFaceGAN needs;
``ganbrush train spade``: train the SPADE synthesizer or its concatenation baseline;
``ganbrush retarget``: InGAN retargeting (:mod:`manipulate.retarget_cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganbrush_core.devices import add_device_argument
from ganbrush_core.io import refuse_overwrite
from manipulate import retarget_cli

# Data-free (SeFa), sampling-based (GANSpace) and classifier-based (InterFaceGAN) sources.
SOURCES = ("sefa", "ganspace", "interfacegan")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "directions", help="compute latent directions (SeFa, GANSpace, InterFaceGAN) for a generator",
        description="Compute latent directions of a generator and write them to OUT/<source>.npz "
                    "(load with manipulate.directions.load_directions).")
    p.add_argument("source", choices=SOURCES)
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, default=10, help="how many directions (sefa, ganspace)")
    p.add_argument("--layers", default=None, help="ws index range FIRST-LAST (inclusive); default all layers")
    p.add_argument("--samples", type=int, default=20_000,
                   help="sampled w (GANSpace PCA, SeFa strength scale, InterFaceGAN scored samples)")
    p.add_argument("--classifier", default=None,
                   help="interfacegan: attribute classifier .safetensors (default: the shipped one)")
    p.add_argument("--names", default=None,
                   help="interfacegan: comma-separated scores, e.g. smiling,age (default: all the classifier has)")
    p.add_argument("--per-layer", action="store_true",
                   help="interfacegan: also one boundary per layer of --layers from style-mixed samples (NAME@Lk)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_device_argument(p)
    p.set_defaults(func=run_directions)
    retarget_cli.register(subparsers)  # ganbrush retarget (InGAN)


def _describe(d) -> str:
    if d.source == "interfacegan":
        return f"svm val accuracy {d.info['svm_val_accuracy']:.3f}"
    return f"share {next(iter(d.info.values()), float('nan')):.3f}"


def run_directions(args: argparse.Namespace) -> int:
    from manipulate.directions import ganspace, parse_layers, save_directions, sefa
    from stylegan_ops.checkpoints import load_generator

    if args.num < 1:
        raise ValueError(f"--num must be at least 1, got {args.num}")
    if args.source != "interfacegan" and (args.classifier or args.names or args.per_layer):
        raise ValueError("--classifier, --names and --per-layer only apply to interfacegan")
    path = Path(args.out) / f"{args.source}.npz"
    refuse_overwrite(path, args.force)
    G = load_generator(args.generator, device=args.device)
    layers = parse_layers(args.layers) if args.layers else None
    if args.source == "sefa":
        directions = sefa(G, args.num, layers, scale_samples=args.samples, seed=args.seed)
    elif args.source == "ganspace":
        directions = ganspace(G, args.num, layers, samples=args.samples, seed=args.seed)
    else:
        from manipulate.attributes import load_classifier
        from manipulate.interfacegan import interfacegan

        clf = load_classifier(args.classifier, device=args.device)
        names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
        directions = interfacegan(G, clf, names, samples=args.samples, seed=args.seed, layers=layers,
                                  per_layer=args.per_layer)
    save_directions(path, directions, G, force=args.force)
    for d in directions:
        print(f"{d.name}: layers {d.layers[0]}-{d.layers[1] - 1}, scale {d.scale:.3f}, {_describe(d)}")
    print(f"wrote {len(directions)} {args.source} directions to {path}")
    return 0


def register_train(train_sub: argparse._SubParsersAction) -> None:
    """Add ``attributes`` to the ``ganbrush train`` subcommands (``train_sub`` is that group's
    subparsers object, as created by stylegan_ops.cli)."""
    p = train_sub.add_parser(
        "attributes", help="train the face attribute classifier used for InterFaceGAN directions",
        description="Train the attribute classifier (10 CelebA attributes, UTKFace gender and age) on the train "
                    "split of ../shared/data (or $GANBRUSH_DATA), framed like the generator's training faces. "
                    "Writes RUN/attributes.safetensors, metrics.json (held-out metrics), config.json, checkpoint.pt, "
                    "log.jsonl and losses.png.")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--res", type=int, default=64, help="the generator's resolution (at most 64 for CelebA)")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="folder to keep the framed faces in (.npz) for later runs")
    p.add_argument("--limit", type=int, default=None, help="use only the first N faces of each source (smoke tests)")
    p.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out); "
                                                  "its saved settings win")
    p.add_argument("--force", action="store_true", help="overwrite the classifier (and any run) in --out")
    add_device_argument(p)
    p.set_defaults(func=_train_attributes)
    _register_train_spade(train_sub)


def _register_train_spade(train_sub: argparse._SubParsersAction) -> None:
    from manipulate.spade_train import PRESETS

    p = train_sub.add_parser(
        "spade", help="train the SPADE synthesizer (label map + style -> face) or its concatenation baseline",
        description="Train a SPADE generator with its VAE style encoder (or the baseline with the labels "
                    "concatenated to every block, --generator concat) on a labelled face set from "
                    "`ganbrush data labels`, at the set's resolution. Writes RUN/synthesizer.safetensors, "
                    "config.json, checkpoint.pt, log.jsonl, samples_<step>.png and losses.png every interval.")
    p.add_argument("--data", required=True, help="labelled face set (images.npy + labels.npy)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--generator", default="spade", choices=("spade", "concat"),
                   help="spade: SPADE blocks; concat: the pix2pixHD-style baseline on the same trunk")
    p.add_argument("--preset", default="cpu64", choices=list(PRESETS), help="tiny: tests and smoke runs")
    p.add_argument("--steps", type=int, default=1_000_000, help="train until this many steps (counted from the "
                                                                "start; default: until --minutes)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget of this call (equal-time comparisons); ends after the step past it")
    p.add_argument("--batch", type=int, default=None, help="faces per step (default: the preset's)")
    p.add_argument("--interval", type=int, default=None, help="steps between checkpoints and samples")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out); "
                                                  "its saved settings win")
    p.add_argument("--force", action="store_true", help="start over in an --out that holds a run")
    add_device_argument(p)
    p.set_defaults(func=_train_spade)


def _train_spade(args: argparse.Namespace) -> int:
    from ganbrush_core.checks import check_float, check_int
    from manipulate.spade_train import PRESETS, SYNTHESIZER_FILE, SpadeTrainConfig, train

    check_int("--steps", args.steps, 1, 100_000_000)
    if args.minutes is not None:
        check_float("--minutes", args.minutes, 0.0, 1e6, lo_open=True)
    for flag, value in (("--batch", args.batch), ("--interval", args.interval)):
        if value is not None:
            check_int(flag, value, 1, 100_000)
    overrides = {k: v for k, v in (("batch", args.batch), ("steps_per_interval", args.interval),
                                   ("seed", args.seed)) if v is not None}
    cfg = SpadeTrainConfig(generator=args.generator, **{**PRESETS[args.preset], **overrides})
    trainer = train(cfg, args.data, args.out, args.steps, device=args.device, resume_from=args.resume,
                    minutes=args.minutes, force=args.force)
    last = next((r for r in reversed(trainer.history) if "sample_recon_l1" in r), None)
    score = f", reconstruction L1 {last['sample_recon_l1']:.3f}" if last else ""
    print(f"wrote {Path(args.out) / SYNTHESIZER_FILE} ({trainer.cfg.generator.value}, {trainer.step} steps, "
          f"{trainer.images_seen} images{score})")
    return 0


def _train_attributes(args: argparse.Namespace) -> int:
    import json

    from ganbrush_core import distributed
    from manipulate.attributes import train_classifier

    train_classifier(args.out, res=args.res, steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr,
                     cache_dir=args.cache, limit=args.limit, force=args.force, resume_from=args.resume,
                     device=args.device)
    if not distributed.current().main:  # under torchrun rank 0 alone evaluates, writes and reports
        return 0
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    for name, m in metrics.get("heldout", {}).items():
        if "mae" in m:
            print(f"{name}: MAE {m['mae']:.1f} years (median baseline {m['median_baseline_mae']:.1f})")
        else:
            print(f"{name}: accuracy {m['accuracy']:.3f}, balanced {m['balanced_accuracy']:.3f}, "
                  f"majority baseline {m['majority_baseline']:.3f}")
    print(f"wrote {Path(args.out) / 'attributes.safetensors'} ({metrics['steps']} steps, "
          f"{metrics['train_seconds']:.0f} s)")
    return 0
