"""``ganbrush compare inversion`` and ``ganbrush compare inpainting``: the evaluation protocols
of DESIGN.md section 6 on any images and checkpoints; the table is printed, and NAME.md,
NAME.csv, NAME.json and NAME_grid.png are written into ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganbrush_core.devices import add_device_argument

#: Most faces or images a comparison takes (the held-out sets hold about 2,000).
MAX_IMAGES = 100_000
#: Longest equal-wall-time budget per image: a day.
MAX_SECONDS = 86_400.0


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the .md, .csv, .json and _grid.png files")
    p.add_argument("--force", action="store_true", help="overwrite those files when they exist")
    add_device_argument(p)


def register(sub: argparse._SubParsersAction) -> None:
    from inpainting.inpaint import Method, ready_methods
    from inversion.project import METHODS

    group = sub.add_parser("compare", help="compare inversion or inpainting methods on your own data",
                           description="Run the project's evaluation protocols on any images and checkpoints.")
    kinds = group.add_subparsers(dest="comparison", required=True)

    p = kinds.add_parser(
        "inversion", help="inversion methods on faces: LPIPS, PSNR, SSIM, identity, s/image",
        description="Invert every face with every method under equal steps and equal wall time; print the table "
                    "and write inversion.md/.csv/.json and inversion_grid.png into --out.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--held-out", type=int, metavar="N", help="the first N of the project's held-out faces")
    src.add_argument("--images", metavar="DIR", help="a folder of photos (faces are detected and aligned with dlib "
                                                     "unless a photo already is a square crop at the generator's size)")
    p.add_argument("--generator", default="default",
                   help="checkpoint: ganbrush .safetensors, rosinality .pt or NVIDIA .pkl ('default': the shipped one)")
    p.add_argument("--methods", default=None, help=f"comma-separated, from {','.join(METHODS)} (default: all; "
                                                   "one that cannot run on this generator is then skipped)")
    p.add_argument("--steps", type=int, default=300, help="equal-steps budget per method and face (default 300)")
    p.add_argument("--seconds", default="60",
                   help="equal-wall-time budget per face in seconds; several comma-separated give one set of rows "
                        "each, e.g. 1,5,30 (default 60)")
    p.add_argument("--edits", default="",
                   help="also measure editability: comma-separated named directions that the attribute classifier "
                        "scores, e.g. smiling,age,male (the shipped generator's); each row gets the score shift "
                        "relative to w+ (default: none)")
    p.add_argument("--edit-strength", type=float, default=3.0, help="strength of those edits (default 3)")
    p.add_argument("--budgets", default="steps,seconds", help="which budgets to run (default steps,seconds)")
    p.add_argument("--probe-steps", type=int, default=8,
                   help="steps timed per phase to set the equal-time budget's steps (default 8)")
    p.add_argument("--align", default="auto", choices=["auto", "always", "never"],
                   help="--images: auto = align unless already a square crop at the generator's size (default)")
    p.add_argument("--framing", default="ganbrush", choices=["ganbrush", "ffhq"],
                   help="crop for aligned faces: ganbrush (the shipped generator's) or ffhq (FFHQ checkpoints)")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    p.add_argument("--grid", type=int, default=8, help="faces shown in the grid (default 8)")
    _common(p)
    p.set_defaults(func=run_inversion)

    p = kinds.add_parser(
        "inpainting", help="inpainting methods per hole-ratio bin: L1, PSNR, SSIM, LPIPS, FID, ms/image",
        description="Fill every (image, mask) pair with every method; print one row per mask bin and method and "
                    "write inpainting.md/.csv/.json and inpainting_grid.png into --out.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--held-out", type=int, metavar="N",
                     help="the first N held-out faces at --res (the default, N = 500, without --images)")
    src.add_argument("--images", metavar="DIR", help="a folder of images (any sizes)")
    masks = p.add_mutually_exclusive_group()
    masks.add_argument("--masks", metavar="DIR",
                       help="a folder of masks, white = hole, paired with --images by file name; rows per hole bin")
    masks.add_argument("--irregular-bins", default=None, metavar="BINS",
                       help="irregular-12k bins, e.g. 10-20,20-30 (the default: 10-20,...,50-60)")
    p.add_argument("--res", type=int, default=64, help="--held-out face resolution (default 64, the shipped model's)")
    # The default leaves out methods whose weights this installation lacks.
    p.add_argument("--methods", default=",".join(m.value for m in ready_methods()),
                   help=f"comma-separated, from {','.join(m.value for m in Method)},glcic-no-poisson "
                        f"(default: {','.join(m.value for m in ready_methods())})")
    p.add_argument("--weights", nargs=2, metavar=("EDGE", "INPAINT"), default=None,
                   help="EdgeConnect generators: ganbrush .safetensors or official EdgeModel_gen.pth "
                        "InpaintingModel_gen.pth (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="image-mask pairing seed of the irregular bins (protocol: 0)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--no-fid", action="store_true", help="skip FID (Inception is the slow part)")
    _common(p)
    p.set_defaults(func=run_inpainting)


def run_inversion(args: argparse.Namespace) -> int:
    from ganbrush_compare import inversion as cmp
    from ganbrush_compare.report import check_outputs, render, write_report
    from ganbrush_core.checks import check_float, check_int
    from inversion.project import METHODS, projection_settings

    # Everything that needs no image and no model first: a refusal takes no time.
    check_outputs(args.out, "inversion", args.force)
    methods = _list(args.methods) if args.methods is not None else list(METHODS)
    budgets = _list(args.budgets)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    if not budgets or any(b not in cmp.BUDGETS for b in budgets):
        raise ValueError(f"--budgets {args.budgets!r}: choose from {', '.join(cmp.BUDGETS)}")
    projection_settings(args.steps)
    try:
        seconds = [float(x) for x in _list(args.seconds)]
    except ValueError:
        raise ValueError(f"--seconds {args.seconds!r}: give numbers of seconds, e.g. 60 or 1,5,30") from None
    if not seconds:
        raise ValueError("--seconds: give at least one number of seconds, e.g. 60 or 1,5,30")
    for value in seconds:
        check_float("--seconds", value, 0, MAX_SECONDS, lo_open=True)
    edits = _list(args.edits)
    check_float("--edit-strength", args.edit_strength, -100, 100)
    check_int("--probe-steps", args.probe_steps, 1, 1000)
    check_int("--grid", args.grid, 1, 64)
    if args.held_out is not None:
        check_int("--held-out", args.held_out, 1, MAX_IMAGES)
    elif not Path(args.images).is_dir():
        raise NotADirectoryError(f"--images {args.images}: no such folder")

    from stylegan_ops.checkpoints import load_generator

    G = load_generator(args.generator, device=args.device)
    if args.held_out is not None:
        faces = cmp.held_out(args.held_out, G.img_resolution)
    else:
        faces = cmp.faces_from_folder(args.images, G.img_resolution, args.align, args.framing, args.detector)
    print(f"{len(faces.images)} faces at {G.img_resolution} px: {faces.describe()}", flush=True)
    report = cmp.compare_inversion(G, faces, methods, budgets, args.steps, seconds, args.probe_steps, args.grid,
                                   generator_name=str(args.generator), skip_unavailable=args.methods is None,
                                   edits=edits, edit_strength=args.edit_strength)
    report.title += f", device {args.device}"
    report.meta.update(generator=str(args.generator), device=str(args.device))
    written = write_report(report, args.out, args.force)
    print("\n" + render(report) + f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def run_inpainting(args: argparse.Namespace) -> int:
    from ganbrush_compare import inpainting as cmp
    from ganbrush_compare.report import check_outputs, render, write_report
    from ganbrush_core.checks import check_int
    from inpainting.inpaint import Method

    check_outputs(args.out, "inpainting", args.force)
    methods = [cmp.as_variant(m) for m in _list(args.methods)]
    if not methods:
        raise ValueError("--methods: none given")
    if args.masks is not None and args.images is None:
        raise ValueError("--masks pairs masks with --images by file name; give --images DIR too")
    if args.weights and Method.EDGECONNECT not in [v.method for v in methods]:
        raise ValueError("--weights only applies when edgeconnect is among --methods")
    bins = cmp.parse_bins(args.irregular_bins or ",".join(cmp.DEFAULT_BINS)) if args.masks is None else None
    check_int("--res", args.res, 16, 4096)
    check_int("--seed", args.seed, 0, 2**32 - 1)
    check_int("--batch", args.batch, 1, 10_000)
    num = args.held_out if args.held_out is not None else 500
    if args.images is None:
        check_int("--held-out", num, 1, MAX_IMAGES)
    for option, folder in (("--images", args.images), ("--masks", args.masks)):
        if folder is not None and not Path(folder).is_dir():
            raise NotADirectoryError(f"{option} {folder}: no such folder")

    model = None
    if Method.EDGECONNECT in [v.method for v in methods]:
        from inpainting.checkpoints import load_edgeconnect

        model = load_edgeconnect(*(args.weights or (None, None)), device=args.device)
    if args.images is None:
        images = cmp.held_out_images(num, args.res)
        what = f"{len(images)} held-out faces per bin at {args.res} px"
    else:
        images = cmp.folder_images(args.images)
        what = f"{len(images)} images from {args.images}"
    if bins is not None:
        pairs = cmp.irregular_pairs(images, bins, args.seed)
        what += f", irregular-12k masks, pairing seed {args.seed}"
    else:
        pairs = cmp.folder_pairs(images, args.masks)
        what += f", masks from {args.masks}"
    import torch

    report = cmp.compare_inpainting(pairs, methods, model, args.batch, fid=not args.no_fid, device=args.device,
                                    title=f"{what}, device {args.device}, torch threads {torch.get_num_threads()}")
    report.meta.update(images=args.images or f"held-out {num} at {args.res} px", masks=args.masks or "irregular-12k",
                       seed=args.seed, weights=args.weights or "default", device=str(args.device))
    written = write_report(report, args.out, args.force)
    print("\n" + render(report) + f"\nwrote {', '.join(str(p) for p in written)}")
    return 0
