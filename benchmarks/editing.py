"""Measure the named edits on inverted held-out faces (issue 6, part 2).

The first ``--num`` held-out faces (as in ``benchmarks/inversion.py``) are inverted with W+
(``--steps`` steps; cached in ``--cache``). Each named direction (the shipped InterFaceGAN file
for the generator, plus ``--directions`` files) is applied at each ``--strengths`` value, and
for every named direction the best-matching SeFa and GANSpace component (largest |cosine| with
its vector over the top ``--components``, sign-aligned to it) is applied side by side with the
named direction's strength scale, so each strength is the same step length in W for all three
(SeFa and GANSpace components are high-variance axes: in their own units a step would be longer).

Reported per (direction, method, strength), means over the faces, each against the
reconstruction (the unedited inversion), so only the edit's effect is measured:

- *score shift*: change of the attribute classifier's score for the direction's attribute
  (logit; years for ``age``); *flip rate*: among faces the classifier put on the other side
  before the edit (logit sign), the share it puts on the pushed side after ("-" for age);
- *identity*: dlib face-descriptor distance to the reconstruction (below about 0.6: same person);
- *LPIPS out*: LPIPS-VGG16 outside the face region, both images multiplied by the outside mask.
  The face region is the ellipse inscribed in the box where dlib's detector puts the face in
  ganbrush's framing (``inversion.identity.FACE_BOX``): it covers brows to chin, so "outside"
  is hair, background and neck.

Local rows (``--local`` names, ``--local-steps`` > 0): the strongest edit of the direction made local to the
face region with :func:`manipulate.local_edit` (Image2StyleGAN++): there, LPIPS out is the change
outside the mask that may change. Grids: one PNG per named direction in ``--out``, rows faces,
columns target, then the strengths with the reconstruction at 0.

    python benchmarks/editing.py                          # shipped generator and directions, 8 faces
    python benchmarks/editing.py --num 2 --steps 20 --local-steps 5 --directions runs/x/sefa.npz  # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganbrush_core.faces import held_out_faces  # noqa: E402
from ganbrush_core.images import image_grid, to_uint8  # noqa: E402
from ganbrush_core.metrics import lpips_model  # noqa: E402
from inversion.identity import FACE_BOX, face_descriptor  # noqa: E402
from inversion.project import invert  # noqa: E402
from inversion.result import Inversion, InversionFileError  # noqa: E402
from manipulate.attributes import AGE, attribute_scores, load_classifier  # noqa: E402
from manipulate.directions import Direction, ganspace, sefa  # noqa: E402
from manipulate.edit import available_directions  # noqa: E402
from manipulate.edits import move  # noqa: E402
from manipulate.local_edit import local_edit  # noqa: E402
from stylegan_ops.checkpoints import generator_hash, load_generator  # noqa: E402

DEFAULT_STRENGTHS = (-6.0, -3.0, 3.0, 6.0)  # InterFaceGAN scales are ~0.6-0.9 w units
# Local edits cost an optimisation each: by default only for attributes that live inside the face.
DEFAULT_LOCAL = ("smiling", "eyeglasses", "mouth_slightly_open")
MATCH_SOURCES = ("sefa", "ganspace")


@dataclass
class Row:
    direction: str
    method: str  # the direction's source (e.g. "interfacegan"), "sefa3 (cos 0.41)", "interfacegan, local"
    strength: float
    score_shift: float
    flip_rate: float
    identity: float
    lpips_out: float


def face_region(res: int) -> torch.Tensor:
    """``[1, 1, res, res]`` {0, 1}: the ellipse inscribed in the framing's dlib face box (1 = face)."""
    left, top, right, bottom = FACE_BOX["ganbrush"]
    centre = torch.arange(res, dtype=torch.float32) + 0.5
    y, x = centre[:, None] / res, centre[None, :] / res
    cx, cy, rx, ry = (left + right) / 2, (top + bottom) / 2, (right - left) / 2, (bottom - top) / 2
    return ((((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) <= 1).float()[None, None]


def cached_inversions(G, num: int, steps: int, cache: Path) -> Inversion:
    """W+ inversions of the first ``num`` held-out faces (one batch; each face optimised on its own)."""
    path = cache / f"heldout-{num}-wplus-{steps}-{generator_hash(G)}.npz"
    if path.is_file():
        try:
            return Inversion.load(path, G)
        except InversionFileError as e:
            print(f"ignoring the unusable cache {path}: {e}", flush=True)
    images = held_out_faces(num, G.img_resolution)
    result = invert(G, images, method="w+", steps=steps)
    result.save(path, force=True)
    print(f"inverted {num} faces in {result.seconds:.0f} s (cached in {path})", flush=True)
    return result


def best_match(target: Direction, candidates: list[Direction]) -> tuple[Direction, float]:
    """The candidate with the largest |cosine| to ``target``, flipped to point the same way, with
    ``target``'s strength scale."""
    cosines = [float(c.vector @ target.vector) for c in candidates]
    i = int(np.argmax(np.abs(cosines)))
    sign = 1.0 if cosines[i] >= 0 else -1.0
    c = candidates[i]
    # The named direction's scale: equal strengths are equal steps in W, so columns compare like with like.
    return Direction(c.name, sign * c.vector, c.layers, target.scale, c.source, c.info), abs(cosines[i])


class Measure:
    """Metrics of edited renders against the reconstruction (scored and described once)."""

    def __init__(self, recon: torch.Tensor, classifier, outside: torch.Tensor) -> None:
        self.recon = recon
        self.classifier = classifier
        self.outside = outside
        self.perceptual = lpips_model("vgg")
        self.recon_ids = [face_descriptor(face) for face in to_uint8(recon)]
        self.before = attribute_scores(classifier, recon) if classifier is not None else {}

    def __call__(self, images: torch.Tensor, attribute: str, strength: float, outside: torch.Tensor) -> dict:
        shift = flip = float("nan")
        if attribute in self.before:
            before, after = self.before[attribute], attribute_scores(self.classifier, images)[attribute]
            shift = float((after - before).mean())
            if attribute != AGE:
                push = 1.0 if strength > 0 else -1.0
                started_other_side = before * push < 0
                if bool(started_other_side.any()):
                    flip = float((after[started_other_side] * push > 0).float().mean())
        ids = [float(np.linalg.norm(face_descriptor(face) - ref))
               for face, ref in zip(to_uint8(images), self.recon_ids)]
        with torch.no_grad():
            lp = self.perceptual(images * outside, self.recon * outside)
        return {"score_shift": shift, "flip_rate": flip, "identity": float(np.mean(ids)), "lpips_out": float(lp.mean())}


def fmt(value: float, spec: str) -> str:
    return "-" if np.isnan(value) else format(value, spec)


def summary_table(rows: list[Row], strength: float) -> list[str]:
    """One line per direction at ``strength``: the named direction, its local edit and the matched
    SeFa / GANSpace components side by side (score shift, identity distance, LPIPS outside face)."""
    lines = ["| direction | named: shift / id / LPIPS out | local: LPIPS out | SeFa match: shift / id / LPIPS out | "
             "GANSpace match: shift / id / LPIPS out |", "|---|---|---:|---|---|"]
    for name in dict.fromkeys(r.direction for r in rows):
        at = [r for r in rows if r.direction == name and r.strength == strength]
        if not at:
            continue

        def cell(r: Row | None, with_method: bool = False) -> str:
            if r is None:
                return "-"
            text = f"{fmt(r.score_shift, '+.2f')} / {r.identity:.3f} / {r.lpips_out:.4f}"
            return f"{r.method}: {text}" if with_method else text

        named = at[0]
        local = next((r for r in at if r.method.endswith(", local")), None)
        sefa_row = next((r for r in at if r.method.startswith("sefa")), None)
        ganspace_row = next((r for r in at if r.method.startswith("ganspace")), None)
        lines.append(f"| {name} | {cell(named)} | {'-' if local is None else format(local.lpips_out, '.4f')} | "
                     f"{cell(sefa_row, True)} | {cell(ganspace_row, True)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="default")
    parser.add_argument("--directions", nargs="*", default=[], help="extra directions files (.npz)")
    parser.add_argument("--names", nargs="*", default=None, help="only these named directions (default: all)")
    parser.add_argument("--classifier", default="default", help="attribute classifier file; 'none' to skip scores")
    parser.add_argument("--num", type=int, default=8, help="held-out faces")
    parser.add_argument("--steps", type=int, default=200, help="W+ inversion steps")
    parser.add_argument("--strengths", type=float, nargs="+", default=list(DEFAULT_STRENGTHS))
    parser.add_argument("--components", type=int, default=20, help="SeFa / GANSpace components to match against")
    parser.add_argument("--local", nargs="*", default=list(DEFAULT_LOCAL), help="named directions to edit locally too")
    parser.add_argument("--local-steps", type=int, default=30, help="local-edit optimisation steps (0: no local rows)")
    parser.add_argument("--cache", default="runs/editing", help="folder for cached inversions")
    parser.add_argument("--out", default="out/bench-editing", help="folder for the JSON table and the grids")
    args = parser.parse_args()
    if args.num < 1 or args.steps < 1 or not args.strengths:
        parser.error("--num and --steps must be at least 1 and --strengths non-empty")

    started = time.perf_counter()
    torch.manual_seed(0)
    G = load_generator(args.generator)
    named = available_directions(G, args.directions)
    if args.names is not None:
        named = {k: v for k, v in named.items() if k in args.names}
    else:  # per-layer variants ("smiling@L3") only when asked for by name
        named = {k: v for k, v in named.items() if "@" not in k}
    if not named:
        parser.error("no named directions for this generator: pass --directions FILE.npz (or check --names)")
    classifier = None if args.classifier == "none" else load_classifier(args.classifier)
    inv = cached_inversions(G, args.num, args.steps, Path(args.cache))
    recon = inv.render(G)
    face = face_region(G.img_resolution)
    outside = 1 - face
    measure = Measure(recon, classifier, outside)
    pool = {"sefa": sefa(G, args.components), "ganspace": ganspace(G, args.components)}

    def render(ws: torch.Tensor) -> torch.Tensor:
        return inv.render(G, ws)

    strengths = sorted(args.strengths)
    rows: list[Row] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, direction in named.items():
        label = direction.source or "named"
        attribute = name.partition("@")[0]  # what the classifier scores
        methods = {label: direction}
        for source in MATCH_SOURCES:
            match, cos = best_match(direction, pool[source])
            methods[f"{match.name} (cos {cos:.2f})"] = match
        columns = {}
        for method, d in methods.items():
            for s in strengths:
                images = render(move(inv.ws, d, s))
                if method == label:
                    columns[s] = images
                rows.append(Row(name, method, s, **measure(images, attribute, s, outside)))
        if args.local_steps > 0 and name in args.local:
            s = max(strengths, key=lambda v: (abs(v), v))  # the strongest, positive on ties
            result = local_edit(G, inv.ws, move(inv.ws, direction, s), face, steps=args.local_steps,
                                noises=inv.noises)
            rows.append(Row(name, f"{label}, local", s, **measure(result.image, attribute, s, outside)))
        columns[0.0] = recon
        order = [inv.target] + [columns[s] for s in sorted(columns)]
        grid = torch.stack(order, dim=1).flatten(0, 1)  # rows faces, columns target then strengths
        image_grid(grid, ncols=len(order)).save(out / f"edit-{name}.png")
        print(f"{name}: done at {time.perf_counter() - started:.0f} s", flush=True)

    print(f"\nEdits of {args.num} held-out faces (W+, {args.steps} steps), generator {args.generator} "
          f"({G.img_resolution} px), torch threads {torch.get_num_threads()}, {time.perf_counter() - started:.0f} s")
    print("| direction | method | strength | score shift | flip rate | identity dist | LPIPS outside face |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.direction} | {r.method} | {r.strength:+g} | {fmt(r.score_shift, '+.2f')} | "
              f"{fmt(r.flip_rate, '.2f')} | {r.identity:.3f} | {r.lpips_out:.4f} |")
    strongest = max(strengths, key=lambda v: (abs(v), v))
    print(f"\nAt strength {strongest:+g} (score shift in logits, years for age; id = identity distance):")
    print("\n".join(summary_table(rows, strongest)))
    (out / "editing.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(f"grid columns: target, then strengths {', '.join(f'{s:+g}' for s in sorted(columns))} "
          f"(0 = reconstruction); wrote {out}/edit-*.png and {out / 'editing.json'}")


if __name__ == "__main__":
    main()
