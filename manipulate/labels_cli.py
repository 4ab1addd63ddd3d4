"""``ganbrush data labels`` (label maps of packed faces) and ``ganbrush train parser`` (the face parser)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganbrush_core.devices import add_device_argument


def register_data(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "labels", help="label maps (parser + landmarks) of packed faces, for training SPADE",
        description="Find the 68 landmarks of every face packed by `ganbrush data faces`, label it (face parser for "
                    "background / skin / hair, landmarks for brows, eyes, nose, lips, mouth) and write images.npy, "
                    "labels.npy, landmarks.npy, found.npy, meta.json and labels.png to --out.")
    p.add_argument("--faces", required=True, help="packed face folder (from `ganbrush data faces`)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--parser", default="default", help="face parser file (default: the shipped one)")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces")
    p.add_argument("--force", action="store_true", help="overwrite images.npy / labels.npy in --out")
    add_device_argument(p)
    p.set_defaults(func=_data_labels)


def _data_labels(args: argparse.Namespace) -> int:
    from manipulate.label_data import build_labelled_faces

    out = build_labelled_faces(args.faces, args.out, args.parser, limit=args.limit, force=args.force,
                               device=args.device)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {meta['count']} labelled faces to {out} (dlib found {meta['detected']:.1%} of them; "
          f"{meta['seconds']:.0f} s)")
    return 0


def register_train(train_sub: argparse._SubParsersAction) -> None:
    p = train_sub.add_parser(
        "parser", help="train the face parser (background / skin / hair) on FASSEG's training faces",
        description="Train the face parser on FASSEG's 20 training faces (jittered framings) and, with "
                    "--labelled-faces, packed training faces whose landmark hull is labelled skin. Writes "
                    "RUN/face_parser64.safetensors, checkpoint.pt, log.jsonl, samples and losses.png, then prints "
                    "the per-class IoU on FASSEG's 50 test faces.")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--labelled-faces", default=None,
                   help="folder with images.npy and landmarks.npy (`ganbrush data labels` writes both)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, help="run folder to continue from (usually --out)")
    p.add_argument("--force", action="store_true", help="start over in a folder that holds a run")
    add_device_argument(p)
    p.set_defaults(func=_train_parser)


def _train_parser(args: argparse.Namespace) -> int:
    from manipulate.face_parser import DEFAULT_FILE, ParserTrainConfig, fasseg_iou, load_parser, train_parser

    cfg = ParserTrainConfig(steps=args.steps, seed=args.seed)
    train_parser(cfg, args.out, args.labelled_faces, device=args.device, resume_from=args.resume,
                 force=args.force)
    iou = fasseg_iou(load_parser(Path(args.out) / DEFAULT_FILE))
    print("FASSEG test IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in iou.items()))
    return 0
