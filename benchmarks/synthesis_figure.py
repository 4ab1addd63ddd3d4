"""The README's semantic-synthesis figure: for each photo, the face at the photo's own resolution,
its label map, the edited map, SPADE's drawings (own map | edited map) and the result at the
photo's own resolution, side by side.

    python benchmarks/synthesis_figure.py --out docs/synthesis.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.images import save_pil  # noqa: E402
from ganbrush_core.paths import data_root  # noqa: E402
from ganbrush_semantic import photo_labels, synthesize_photo  # noqa: E402
from inversion import load_photo  # noqa: E402
from inversion.align import align_native  # noqa: E402
from manipulate import labels as L  # noqa: E402

EDITS = {"mouth widened 30 %": L.PRESETS["widen mouth"], "eyes opened 60 %": L.PRESETS["open eyes"],
         "brows removed": L.PRESETS["remove brows"]}


def tile(image: np.ndarray, side: int, label: str) -> np.ndarray:
    im = Image.fromarray(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if image.shape[0] > side
                                    else cv2.INTER_NEAREST))
    ImageDraw.Draw(im).text((4, 4), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="woman_portrait.jpg,model_face.jpg")
    ap.add_argument("--edits", default=",".join(EDITS), help="comma-separated, from: " + ", ".join(EDITS))
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--out", default="docs/synthesis.png")
    args = ap.parse_args()
    rows = []
    for name, edit_name in zip(args.photos.split(","), args.edits.split(",")):
        photo = load_photo(data_root() / "photos" / name)
        own = photo_labels(photo, size=256)
        edited = EDITS[edit_name](own.labels)
        result = synthesize_photo(photo, edited, faces=own.faces)
        before = align_native(photo, own.aligned).image
        after = align_native(result.photo, own.aligned).image
        s = args.side
        rows.append(np.concatenate([
            tile(before, s, f"{name} ({before.shape[0]} px face)"),
            tile(L.colorize(own.labels), s, "label map"),
            tile(L.colorize(edited), s, edit_name),
            tile(result.reconstruction, s, "SPADE: own map"),
            tile(result.synthesized, s, "SPADE: edited map"),
            tile(after, s, "result, photo's resolution"),
        ], 1))
        full = Path(args.out).with_name(Path(args.out).stem + f"-{Path(name).stem}.png")
        save_pil(Image.fromarray(after), full)
        print(f"{name}: {edit_name}; {int((result.photo != photo).any(-1).sum())} px changed; native face "
              f"crop written to {full}")
    save_pil(Image.fromarray(np.concatenate(rows, 0)), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
