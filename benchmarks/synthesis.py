"""Semantic synthesis on held-out faces: SPADE against the concatenation baseline, and the parser.

For the first ``--faces`` held-out faces (64 px, the training framing), their label maps (shipped
parser + landmarks) are drawn by each synthesizer and measured:

- FID (offline Inception) of the drawings against the same held-out faces, with random styles
  (``z ~ N(0, I)``) and with each face's own style;
- label consistency: the map of each drawing is derived again (dlib landmarks + parser) and
  compared with the input map: mIoU over the 11 classes (dataset IoU per class, then the mean);
- style fidelity: LPIPS (VGG) between a face and its drawing from its own map and style;
- an edited map: the mouth widened 30 % (``labels.scale_parts``); mIoU of the mouth classes of
  the drawings' derived maps against the edited maps (is the edit followed?);
- ms per face (batch 1, median).

Also the parser's per-class IoU on FASSEG's 50 test faces (``--fasseg``) and, for scale, the FID
of as many real training faces against the same held-out faces (``--reference``).

    python benchmarks/synthesis.py --models spade=manipulate/weights/spade64.safetensors,\\
        concat=manipulate/weights/spade64-concat.safetensors --faces 1000 --fasseg \\
        --reference out/faces64-train --out runs/synthesis.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.faces import held_out_faces  # noqa: E402
from ganbrush_core.fid import Stats, features_from_images, fid_from_stats  # noqa: E402
from ganbrush_core.images import to_uint8  # noqa: E402
from ganbrush_core.metrics import lpips_model  # noqa: E402
from manipulate import labels as L  # noqa: E402
from manipulate.face_parser import fasseg_iou, label_faces, load_parser  # noqa: E402
from manipulate.label_data import all_landmarks  # noqa: E402
from manipulate.spade import load_synthesizer  # noqa: E402


def map_iou(pred: np.ndarray, target: np.ndarray, classes: list[int]) -> float:
    """Mean over ``classes`` (those present in either) of the dataset IoU of ``[N, H, W]`` maps."""
    ious = []
    for c in classes:
        p, t = pred == c, target == c
        union = (p | t).sum()
        if union:
            ious.append((p & t).sum() / union)
    return float(np.mean(ious))


def relabel(parser, images: np.ndarray) -> np.ndarray:
    """The label maps of uint8 ``[N, r, r, 3]`` faces, derived as for real faces."""
    lms, _ = all_landmarks(images, progress=False)
    return label_faces(parser, images, lms, progress=False)


@torch.no_grad()
def draw(net, labels: np.ndarray, z: torch.Tensor, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(labels), batch):
        onehot = L.one_hot(torch.from_numpy(labels[i:i + batch]).long())
        out.append(to_uint8(net(onehot, z[i:i + batch]).clamp(-1, 1)))
    return np.concatenate(out)


@torch.no_grad()
def median_ms(net, onehot: torch.Tensor, z: torch.Tensor, reps: int = 20) -> float:
    """Median ms of one drawing (batch 1) after a warm-up."""
    net(onehot, z)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        net(onehot, z)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="NAME=FILE,NAME=FILE synthesizers to compare")
    ap.add_argument("--faces", type=int, default=1000, help="held-out faces")
    ap.add_argument("--widen", type=float, default=1.3, help="mouth scale of the edited maps")
    ap.add_argument("--fasseg", action="store_true", help="also the parser's IoU on FASSEG's test faces")
    ap.add_argument("--reference", default=None, metavar="FACES_DIR",
                    help="packed training faces: also the FID of as many real faces (the floor at this count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    models = dict(item.split("=", 1) for item in args.models.split(","))
    parser = load_parser()
    t0 = time.perf_counter()
    faces = held_out_faces(args.faces, 64)
    real = to_uint8(faces)
    labels = relabel(parser, real)
    edited = np.stack([L.scale_parts(m, L.MOUTH, args.widen) for m in labels])
    real_stats = Stats.of(features_from_images(faces))
    print(f"{len(real)} held-out faces labelled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lp = lpips_model("vgg")
    all_classes = list(range(L.NUM_CLASSES))
    mouth = [L.CLASS_INDEX[c] for c in L.MOUTH]
    rows = {}
    for name, path in models.items():
        net = load_synthesizer(path).eval()
        g = torch.Generator().manual_seed(args.seed)
        z_random = torch.randn(len(real), net.cfg.z_dim, generator=g)
        with torch.no_grad():
            z_own = torch.cat([net.encode_style(faces[i:i + 64]) for i in range(0, len(faces), 64)]).float()
        random_draw = draw(net, labels, z_random)
        own_draw = draw(net, labels, z_own)
        edit_draw = draw(net, edited, z_own)
        row = {
            "params_G": sum(p.numel() for p in net.generator.parameters()),
            "fid_random_style": fid_from_stats(real_stats, Stats.of(features_from_images(random_draw))),
            "fid_own_style": fid_from_stats(real_stats, Stats.of(features_from_images(own_draw))),
            "miou_random_style": map_iou(relabel(parser, random_draw), labels, all_classes),
            "miou_own_style": map_iou(relabel(parser, own_draw), labels, all_classes),
        }
        with torch.no_grad():
            d = [lp(torch.from_numpy(own_draw[i:i + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1,
                    faces[i:i + 64]).flatten() for i in range(0, len(faces), 64)]
        row["lpips_own_style"] = float(torch.cat(d).mean())
        edit_labels = relabel(parser, edit_draw)
        row["miou_mouth_widened"] = map_iou(edit_labels, edited, mouth)
        row["miou_mouth_unedited"] = map_iou(relabel(parser, own_draw), labels, mouth)
        row["ms_per_face"] = median_ms(net, L.one_hot(torch.from_numpy(labels[:1]).long()), z_own[:1])
        rows[name] = row
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in row.items()})}", file=sys.stderr)
    keys = list(next(iter(rows.values())))
    print("| metric | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{rows[m][k]:.4g}" for m in rows) + " |")
    if args.reference:
        from ganbrush_core.faces import load_images

        ref = np.asarray(load_images(args.reference)[:len(real)])
        rows_ref = fid_from_stats(real_stats, Stats.of(features_from_images(ref)))
        print(f"\nFID of {len(ref)} real training faces against the same held-out faces: {rows_ref:.2f}")
    result = {"faces": len(real), "widen": args.widen, "seed": args.seed, "models": models, "results": rows,
              "threads": torch.get_num_threads()}
    if args.reference:
        result["fid_real_training_faces"] = rows_ref
    if args.fasseg:
        iou = fasseg_iou(parser, progress=False)
        result["fasseg_iou"] = iou
        print("\n| FASSEG class | IoU |\n|---|---:|")
        for k, v in iou.items():
            print(f"| {k} | {v:.3f} |")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
