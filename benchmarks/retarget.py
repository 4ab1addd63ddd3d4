"""Retargeting: InGAN (manipulate.retarget) vs. stretch, centre crop and seam carving, by SIFID.

Protocol: each image (``--photos``: names under ../shared/data, default three photos and two
FASSEG test faces) is scaled so its longest side is ``--res`` px (256): that is the "native"
resolution of this benchmark. Three target shapes: width x1.5, width x0.7, height x1.3. Methods:

- ``ingan``: InGAN trained on the image (``--steps``, working size 128 px, no cache: every image
  trains afresh, timed), rendered at the native size with the photo's detail added
  (``manipulate.retarget.render``); ``ingan-plain``: the same model's output upsampled without it;
- ``gpnn``: patch nearest neighbours (``manipulate.gpnn``, no training) at the same working size,
  rendered at the native size through its patch correspondences (``render_gpnn``);
- ``stretch`` (bicubic resize), ``crop`` (centred window; only for a shrinking shape: it cannot
  enlarge, so "n/a" for x1.5 and x1.3), ``seam`` (seam carving, ``manipulate.seam_carving``).

Score: SIFID (``ganbrush_core.fid.sifid``: Fréchet distance between the 64-d first-pool features
of the FID Inception at every position, output vs. input, images not resized), lower is better;
the mean over images per shape and method. Time: InGAN training seconds per image and ms per
output for every method (rendering only, for InGAN), on this CPU with ``torch`` on 1 thread.

    python benchmarks/retarget.py                                   # about 15-20 min on 1 thread
    python benchmarks/retarget.py --photos photos/laos.jpg --steps 50 --out /tmp/rt   # smoke run
    python benchmarks/retarget.py --out out/retarget --figure docs/retarget.png      # the README's
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.fid import EarlyInception, sifid  # noqa: E402
from ganbrush_core.images import read_image, to_uint8, uint8_to_float  # noqa: E402
from ganbrush_core.io import write_bytes, write_text  # noqa: E402
from ganbrush_core.paths import data_root  # noqa: E402
from manipulate.retarget import DEFAULT_STEPS, DEFAULT_WORKING_SIZE, fit, render, render_gpnn  # noqa: E402
from manipulate.seam_carving import center_crop, seam_carve, stretch  # noqa: E402

PHOTOS = ("photos/laos.jpg", "photos/classroom_in_tanzania.jpg", "photos/woman_portrait.jpg",
          "segmentation/fasseg-v2/test/images/1.png", "segmentation/fasseg-v2/test/images/10.png")
SHAPES = {"width x1.5": (1.0, 1.5), "width x0.7": (1.0, 0.7), "height x1.3": (1.3, 1.0)}  # (height, width)
METHODS = ("ingan", "ingan-plain", "gpnn", "stretch", "crop", "seam")


def native(path: Path, res: int) -> torch.Tensor:
    image = read_image(path)
    s = res / max(image.shape[-2:])
    size = (round(image.shape[-2] * s), round(image.shape[-1] * s))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def timed(fn, *args) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000


def run(photos: list[str], res: int, steps: int, working_size: int) -> tuple[list[dict], dict]:
    """Rows (image, shape, method, sifid, ms) and the outputs of the first image (for the figure)."""
    extractor = EarlyInception()
    rows, shown = [], {}
    for k, name in enumerate(photos):
        x = native(data_root() / name, res)
        H, W = x.shape[-2:]
        u8 = to_uint8(x)[0]
        t0 = time.perf_counter()
        model = fit(x, steps=steps, working_size=working_size, cache=False, progress=False)
        train_s = time.perf_counter() - t0
        print(f"{name}: {W}x{H}, InGAN trained in {train_s:.0f} s", flush=True)
        for shape, (fh, fw) in SHAPES.items():
            size = (round(W * fw), round(H * fh))
            outs = {}
            outs["ingan"], ms_ingan = timed(render, model, x, size)
            outs["ingan-plain"], ms_plain = timed(render, model, x, size, False)
            outs["gpnn"], ms_gpnn = timed(render_gpnn, x, size, working_size)
            ms = {"ingan": ms_ingan, "ingan-plain": ms_plain, "gpnn": ms_gpnn}
            for method, fn in (("stretch", stretch), ("crop", center_crop), ("seam", seam_carve)):
                try:
                    out, ms[method] = timed(fn, u8, size)
                except ValueError:  # crop cannot enlarge
                    continue
                outs[method] = uint8_to_float(out)
            for method in METHODS:
                score = sifid(x, outs[method], extractor) if method in outs else None
                rows.append({"image": name, "shape": shape, "method": method, "sifid": score,
                             "ms": ms.get(method), "train_s": train_s if method.startswith("ingan") else None})
            if k == 0 or (k == 1 and shape == "width x1.5"):
                shown[(name, shape)] = {"input": x, **outs}
    return rows, shown


def table(rows: list[dict], photos: list[str]) -> str:
    shapes = list(SHAPES)
    lines = ["| method | " + " | ".join(f"SIFID {s}" for s in shapes) + " | ms per output | train s per image |",
             "|---|" + "---:|" * (len(shapes) + 2)]
    for method in METHODS:
        cells = []
        for s in shapes:
            vals = [r["sifid"] for r in rows if r["method"] == method and r["shape"] == s and r["sifid"] is not None]
            cells.append(f"{np.mean(vals):.3f}" if len(vals) == len(photos) else "n/a")
        ms = [r["ms"] for r in rows if r["method"] == method and r["ms"] is not None]
        train = [r["train_s"] for r in rows if r["method"] == method and r["train_s"] is not None]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {np.mean(ms):.0f} | "
                     + (f"{np.mean(train):.0f}" if train else "-") + " |")
    wins = []
    for s in shapes:
        best = {}
        for name in photos:
            cand = {r["method"]: r["sifid"] for r in rows if r["image"] == name and r["shape"] == s
                    and r["sifid"] is not None}
            best[name] = min(cand, key=cand.get)
        ingan = sum(b == "ingan" for b in best.values())
        gp = sum(b == "gpnn" for b in best.values())
        wins.append(f"{s}: InGAN lowest on {ingan}/{len(photos)} images, GPNN on {gp} (best per image: "
                    + ", ".join(f"{Path(n).stem} {b}" for n, b in best.items()) + ")")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {w}" for w in wins) + "\n"


def figure(shown: dict, path: Path) -> None:
    """One row per shown (image, shape): input, InGAN at each shape (first image), seam carving, stretch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for n, _ in shown))
    first = names[0]
    panels = [("input", shown[(first, "width x1.5")]["input"])]
    panels += [(f"InGAN, {s}", shown[(first, s)]["ingan"]) for s in SHAPES]
    panels += [(f"GPNN, {s}", shown[(first, s)]["gpnn"]) for s in SHAPES]
    panels += [("seam carving, width x1.5", shown[(first, "width x1.5")]["seam"]),
               ("stretch, width x1.5", shown[(first, "width x1.5")]["stretch"])]
    rows = [panels]
    for other in names[1:]:
        o = shown[(other, "width x1.5")]
        rows.append([("input", o["input"]), ("InGAN, width x1.5", o["ingan"]), ("GPNN, width x1.5", o["gpnn"]),
                     ("seam carving, width x1.5", o["seam"]), ("stretch, width x1.5", o["stretch"])])
    height = max(p.shape[-2] for row in rows for _, p in row)
    fig = plt.figure(figsize=(30, 3.6 * len(rows)))
    for r, row in enumerate(rows):
        widths = [p.shape[-1] for _, p in row]
        total = sum(widths) + 20 * (len(widths) - 1)
        x = 0
        for title, image in row:
            ax = fig.add_axes([x / total, 1 - (r + 1) / len(rows) + 0.02,
                               image.shape[-1] / total * 0.98, (1 / len(rows)) * 0.85 * image.shape[-2] / height])
            ax.imshow(to_uint8(image)[0])
            ax.set_title(title, fontsize=10)
            ax.axis("off")
            x += image.shape[-1] + 20
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), help="images, relative to ../shared/data")
    p.add_argument("--res", type=int, default=256, help="longest side of each image (the benchmark's native size)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--working-size", type=int, default=DEFAULT_WORKING_SIZE)
    p.add_argument("--out", default=None, help="folder for results.md, results.csv and retarget.png")
    p.add_argument("--figure", default=None, help="also write the figure here (e.g. docs/retarget.png)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    rows, shown = run(args.photos, args.res, args.steps, args.working_size)
    text = (f"{len(args.photos)} images at {args.res} px, InGAN {args.steps} steps at {args.working_size} px, "
            f"torch threads 1, total {time.time() - t0:.0f} s\n\n" + table(rows, args.photos))
    print(text)
    if args.out:
        out = Path(args.out)
        write_text(out / "results.md", text)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text(out / "results.csv", buf.getvalue())
        figure(shown, out / "retarget.png")
    if args.figure:
        figure(shown, Path(args.figure))


if __name__ == "__main__":
    main()
