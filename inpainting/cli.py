"""``ganbrush inpaint``: fill the white region of a mask in a photo (EdgeConnect or a classical method)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganbrush_core.devices import add_device_argument, resolve_device
from inpainting.edges import DEFAULT_SIGMA
from inpainting.inpaint import GLCIC_METHODS, Method
from inpainting.masks import INVERTED_RATIO


def _inpaint(args: argparse.Namespace) -> int:
    from ganbrush_core.checks import check_float
    from ganbrush_core.images import IMAGE_SUFFIX_HINT, image_suffixes, read_image, read_map, write_image, write_map
    from ganbrush_core.io import check_output, write_all
    from ganbrush_core.masks import MaskError, hole_ratio, read_mask
    from inpainting.checkpoints import load_edgeconnect
    from inpainting.inpaint import inpaint

    out = Path(args.out)
    save_edges = Path(args.save_edges) if args.save_edges else None
    method = Method(args.method)
    if method is not Method.EDGECONNECT and (args.edges or save_edges or args.weights):
        raise ValueError(f"--edges, --save-edges and --weights only apply to --method edgeconnect, not {method.value}")
    if (args.glcic_weights or args.no_poisson) and method not in GLCIC_METHODS:
        raise ValueError(f"--glcic-weights and --no-poisson only apply to --method glcic and glcic-refine, "
                         f"not {method.value}")
    # Outputs and numbers are checked before anything is read or computed; nothing is created yet.
    targets = [check_output(out, args.force, image_suffixes(), "--out", IMAGE_SUFFIX_HINT)]
    if save_edges is not None:
        targets.append(check_output(save_edges, args.force, image_suffixes(), "--save-edges", IMAGE_SUFFIX_HINT))
    check_float("--sigma (Canny)", args.sigma, 0, 100, lo_open=True)

    image = read_image(args.image)
    mask = read_mask(args.mask, invert=args.invert_mask)
    h, w = image.shape[-2:]
    if mask.shape[-2:] != image.shape[-2:]:
        raise MaskError(f"{args.mask} is {mask.shape[-1]}x{mask.shape[-2]} but {args.image} is {w}x{h}; "
                        "resize the mask to the image")
    ratio = hole_ratio(mask)
    hole_colour = "black" if args.invert_mask else "white"
    flip_hint = "drop --invert-mask" if args.invert_mask else "pass --invert-mask"
    if ratio == 0:
        raise MaskError(f"{args.mask} has no hole ({hole_colour} = hole); draw one, or {flip_hint}")
    if ratio == 1:
        raise MaskError(f"{args.mask} covers the whole image ({hole_colour} = hole); nothing is left to fill "
                        f"from, {flip_hint}?")
    if ratio > INVERTED_RATIO:
        print(f"ganbrush: warning: {args.mask} marks {ratio:.0%} of the image as hole ({hole_colour} = hole); "
              f"if the holes are the other colour, {flip_hint}", file=sys.stderr)

    edges = None
    if args.edges:
        edges = read_map(args.edges)
        if edges.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"{args.edges} is {edges.shape[-1]}x{edges.shape[-2]} but {args.image} is {w}x{h}")
    model = None
    if method is Method.EDGECONNECT:
        model = load_edgeconnect(*args.weights, device=args.device) if args.weights else \
            load_edgeconnect(device=args.device)
    elif method in GLCIC_METHODS:
        from inpainting.glcic_checkpoints import load_glcic

        model = load_glcic(args.glcic_weights, device=args.device, prefill=GLCIC_METHODS[method])
    result = inpaint(image, mask, edges, method=method, model=model, sigma=args.sigma,
                     poisson=not args.no_poisson)
    with write_all(targets, args.force) as tmp:  # both files or neither
        write_image(result.image, tmp[0], force=True)
        if save_edges is not None:
            write_map(result.edges, tmp[1], force=True)
    print(f"wrote {out} ({method.value}, {w}x{h}, hole {ratio:.1%})"
          + (f" and edges {save_edges}" if save_edges is not None else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inpaint", help="fill the white region of a mask in an image",
                       description="Fill the holes of IMAGE marked white in MASK (any image mode; binarised at 50%).")
    p.add_argument("image", help="image to repair (any format PIL reads)")
    p.add_argument("mask", help="mask image of the same size, white = hole")
    p.add_argument("--out", required=True, help="image file to write (.png keeps the known pixels exact)")
    p.add_argument("--method", default=Method.EDGECONNECT.value, choices=[m.value for m in Method],
                   help="edgeconnect (default), glcic, glcic-refine (a GLCIC network correcting the biharmonic "
                        "fill: ganbrush's variant), or a classical baseline (telea, ns, biharmonic, patchmatch)")
    p.add_argument("--edges", default=None,
                   help="edgeconnect: edge map (white = edge) whose lines inside the hole replace the predicted ones")
    p.add_argument("--save-edges", default=None, help="edgeconnect: also write the edge map used (to edit it)")
    p.add_argument("--weights", nargs=2, metavar=("EDGE", "INPAINT"), default=None,
                   help="edgeconnect generators: ganbrush .safetensors or official EdgeModel_gen.pth "
                        "InpaintingModel_gen.pth")
    p.add_argument("--glcic-weights", default=None, metavar="FILE",
                   help="glcic / glcic-refine completion network (default: the shipped one): ganbrush "
                        ".safetensors from `ganbrush train glcic`, or a GLCIC-PyTorch model_cn with its config.json "
                        "beside it")
    p.add_argument("--no-poisson", action="store_true",
                   help="glcic, glcic-refine: skip the paper's Poisson blending of the fill into the hole's border")
    p.add_argument("--invert-mask", action="store_true", help="black = hole instead of white")
    p.add_argument("--sigma", type=float, default=DEFAULT_SIGMA, help="Canny sigma for the known edges (default 2)")
    p.add_argument("--force", action="store_true", help="overwrite output files")
    add_device_argument(p)
    p.set_defaults(func=_inpaint)


def _train_edgeconnect(args: argparse.Namespace) -> int:
    from ganbrush_core import distributed
    from inpainting.data import EdgeConnectFaces
    from inpainting.train import PRESETS, TrainConfig, train

    overrides = {name: value for name, value in (
        ("batch", args.batch), ("seed", args.seed), ("steps_per_interval", args.interval),
        ("edge_weights", args.edge_weights), ("init_inpaint", args.init_inpaint)) if value is not None}
    cfg = TrainConfig(stage=args.stage, **{**PRESETS[args.preset], **overrides})
    dataset = EdgeConnectFaces(args.data, sigma=cfg.sigma, xflip=cfg.xflip)
    workers = args.workers if args.workers is not None else (8 if resolve_device(args.device).type == "cuda" else 0)
    trainer = train(cfg, dataset, args.out, steps=args.steps, device=args.device, resume_from=args.resume,
                    workers=workers)
    if not distributed.current().main:  # under torchrun rank 0 alone reports
        return 0
    written = [p.name for p in sorted(Path(args.out).glob("*_generator.safetensors"))]
    print(f"{args.out}: stage {trainer.cfg.stage.value}, {trainer.step} steps, {dataset.res} px; "
          f"generators: {', '.join(written)}")
    return 0


def register_train(train_sub: argparse._SubParsersAction) -> None:
    """Add ``edgeconnect`` to the ``ganbrush train`` subcommands (``train_sub`` is that group's
    subparsers object, as created by stylegan_ops.cli)."""
    from inpainting.train import PRESETS, Stage

    p = train_sub.add_parser(
        "edgeconnect", help="train EdgeConnect's edge (G1) or inpainting (G2) generator on packed faces",
        description="Train one EdgeConnect stage: edge (G1 on Canny edges), inpaint (G2 with true edges), "
                    "inpaint-predicted (G2 with G1's edges, G1 frozen). Masks are random strokes and boxes.")
    p.add_argument("--data", required=True, help="train-split folder from `ganbrush data faces --res 128 --out DIR`")
    p.add_argument("--out", required=True, help="run folder (checkpoint, generators, samples, logs)")
    p.add_argument("--stage", required=True, choices=[s.value for s in Stage])
    p.add_argument("--steps", type=int, required=True, help="train until this many steps (counted from the start)")
    p.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out)")
    p.add_argument("--preset", default="paper", choices=list(PRESETS),
                   help="network size: paper (64 channels, 8 blocks), cpu (32, 4), tiny (tests)")
    p.add_argument("--edge-weights", default=None, help="inpaint-predicted: G1 file (RUN/edge_generator.safetensors)")
    p.add_argument("--init-inpaint", default=None,
                   help="inpaint-predicted: G2 to start from (stage inpaint's RUN/inpaint_generator.safetensors)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--interval", type=int, default=None, help="steps between checkpoints and samples")
    p.add_argument("--seed", type=int, default=None)
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes for loading and Canny (default: 8 on CUDA, 0 on CPU)")
    p.set_defaults(func=_train_edgeconnect)
    _register_train_glcic(train_sub)


def _train_glcic(args: argparse.Namespace) -> int:
    from inpainting.glcic_train import PRESETS, WEIGHTS_FILE, GlcicFaces, GlcicTrainConfig, train_glcic

    overrides = {name: value for name, value in (
        ("batch", args.batch), ("seed", args.seed), ("steps_per_interval", args.interval),
        ("phase1_steps", args.phase1_steps), ("phase2_steps", args.phase2_steps), ("prefill", args.prefill),
        ("init_weights", args.init), ("init_discriminator", args.init_discriminator), ("optimizer", args.optimizer),
        ("lr", args.lr)) if value is not None}
    cfg = GlcicTrainConfig(**{**PRESETS[args.preset], **overrides})
    dataset = GlcicFaces(args.data, xflip=cfg.xflip)
    workers = args.workers if args.workers is not None else (8 if resolve_device(args.device).type == "cuda" else 0)
    trainer = train_glcic(cfg, dataset, args.out, steps=args.steps, device=args.device, resume_from=args.resume,
                          workers=workers)
    print(f"{args.out}: glcic, {trainer.step} steps (phase {trainer.cfg.phase(trainer.step - 1)}), "
          f"{dataset.res} px; weights: {WEIGHTS_FILE}")
    return 0


def _register_train_glcic(train_sub: argparse._SubParsersAction) -> None:
    from inpainting.glcic import Prefill
    from inpainting.glcic_train import PRESETS

    p = train_sub.add_parser(
        "glcic", help="train a GLCIC completion network and context discriminator on packed faces",
        description="GLCIC's three phases by step: the completion network with hole MSE, then the global+local "
                    "discriminator alone, then both (MSE + 0.0004 x adversarial). Masks are random strokes and boxes.")
    p.add_argument("--data", required=True, help="train-split folder from `ganbrush data faces --res 64 --out DIR`")
    p.add_argument("--out", required=True, help="run folder (checkpoint, glcic.safetensors, samples, logs)")
    p.add_argument("--steps", type=int, required=True, help="train until this many steps (counted from the start)")
    p.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out)")
    p.add_argument("--preset", default="cpu", choices=list(PRESETS),
                   help="network size: paper (64 channels), cpu (32), tiny (tests)")
    p.add_argument("--phase1-steps", type=int, default=None, help="steps of completion-network-only training")
    p.add_argument("--phase2-steps", type=int, default=None, help="steps of discriminator-only training")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--interval", type=int, default=None, help="steps between checkpoints and samples")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--prefill", default=None, choices=[f.value for f in Prefill],
                   help="what the hole holds for the network: mean (the paper, default) or biharmonic (the "
                        "glcic-refine variant: the network learns a correction of scikit-image's biharmonic fill)")
    p.add_argument("--init", default=None, metavar="FILE",
                   help="a new run starts from this completion network's weights (e.g. the shipped glcic64)")
    p.add_argument("--init-discriminator", default=None, metavar="FILE",
                   help="a new run starts its context discriminator from this file (a run's "
                        "glcic_discriminator.safetensors, or a shipped one), e.g. to continue on a GPU")
    p.add_argument("--optimizer", default=None, choices=["adadelta", "adam"],
                   help="adadelta (the paper's, default) or adam (fine-tuning, e.g. --prefill biharmonic --init)")
    p.add_argument("--lr", type=float, default=None, help="adam's learning rate (default 2e-4)")
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: 8 on CUDA, 0 on CPU)")
    p.set_defaults(func=_train_glcic)
