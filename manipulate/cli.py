"""``ganbrush directions``: compute latent directions for a generator and save them."""

from __future__ import annotations

import argparse
from pathlib import Path

# Data-free and sampling-based sources; InterFaceGAN (classifier-based) joins when its classifier ships.
SOURCES = ("sefa", "ganspace")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "directions", help="compute latent directions (SeFa, GANSpace) for a generator",
        description="Compute latent directions of a generator and write them to OUT/<source>.npz "
                    "(load with manipulate.directions.load_directions).")
    p.add_argument("source", choices=SOURCES)
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, default=10, help="how many directions")
    p.add_argument("--layers", default=None, help="ws index range FIRST-LAST (inclusive); default all layers")
    p.add_argument("--samples", type=int, default=20_000, help="sampled w (GANSpace PCA, SeFa strength scale)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run_directions)


def run_directions(args: argparse.Namespace) -> int:
    from manipulate.directions import ganspace, parse_layers, save_directions, sefa
    from stylegan_ops.checkpoints import load_generator

    if args.num < 1:
        raise ValueError(f"--num must be at least 1, got {args.num}")
    path = Path(args.out) / f"{args.source}.npz"
    if path.exists() and not args.force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    G = load_generator(args.generator)
    layers = parse_layers(args.layers) if args.layers else None
    if args.source == "sefa":
        directions = sefa(G, args.num, layers, scale_samples=args.samples, seed=args.seed)
    else:
        directions = ganspace(G, args.num, layers, samples=args.samples, seed=args.seed)
    save_directions(path, directions, G, force=args.force)
    for d in directions:
        share = next(iter(d.info.values()), float("nan"))
        print(f"{d.name}: layers {d.layers[0]}-{d.layers[1] - 1}, scale {d.scale:.3f}, share {share:.3f}")
    print(f"wrote {len(directions)} {args.source} directions to {path}")
    return 0
