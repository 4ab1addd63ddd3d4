"""Native-resolution fidelity: what a user sees of an edit, at the photo's own size (issue 16).

Faces: the largest face of each portrait in ``../shared/data/photos`` and the first ``--num``
held-out UTKFace faces at their own 200 px (the photo is the UTKFace file itself). Each is
inverted with PTI (cached in ``--cache``) and edited along ``--directions`` at ``--strength``.
Three renderings of the same edit are compared:

- ``generator``: the generator's edited render scaled up and pasted (the behaviour before native
  rendering);
- ``residual``: the low-frequency residual ``E - R`` added to the photo's pixels (no flow);
- ``native``: flow + residual transfer (:mod:`manipulate.transfer`), the default.

Per rendering and direction, means over faces:

- *kept*: the attribute classifier's score shift on the result (its aligned face at the
  classifier's resolution, against the input photo's) over the shift on the generator's own
  renders (edited against reconstruction); 1 = all of the edit reaches the photo. Shown as the
  ratio of the summed shifts over faces, and the median of the per-face ratios (a face whose
  generator shift is tiny makes a per-face ratio, and so a mean of them, meaningless);
- *identity*: dlib descriptor distance between the input's and the result's aligned faces;
- *changed*: the share of the aligned square the change mask touches (native/residual; the
  generator paste replaces all of it);
- *LPIPS out*: LPIPS-VGG16 between input and result outside the face (hair, background: the
  aligned square at 256 px outside the ellipse of the dlib face box, as in
  ``benchmarks/editing.py``);
- *sharpness*: variance of the Laplacian of the result's native aligned crop / the input's.

Then the no-edit round trip per rendering (bit-identical photo? PSNR of the native face crop)
and the time of the transfer step (flow, residual, mask, applying it) at 1, 4 and 12 MP
(the first portrait resized). ``--figure`` writes a before/after figure at the photo's own
resolution: the face region of the input, the generator paste and the native result, 1:1, for
the portrait with the largest face.

    python benchmarks/fidelity.py                      # 4 portraits + 8 UTKFace faces, ~6 min on 1 thread
    python benchmarks/fidelity.py --num 2 --steps 20 --pti-steps 20 --directions smile   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editing import face_region  # noqa: E402  (benchmarks/ is on the path when run as a script)

from ganbrush_core.faces import source_dir, split_files  # noqa: E402
from ganbrush_core.images import uint8_to_float  # noqa: E402
from ganbrush_core.metrics import lpips_model, sharpness  # noqa: E402
from ganbrush_core.paths import data_root  # noqa: E402
from inversion import Face, Inversion, InversionFileError, align_face, align_native, detect_faces, invert  # noqa: E402
from inversion.identity import face_descriptor  # noqa: E402
from inversion.photos import load_photo  # noqa: E402
from manipulate.attributes import attribute_scores, load_classifier  # noqa: E402
from manipulate.edit import available_directions, edit, resolve_direction  # noqa: E402
from manipulate.transfer import Rendering, compute_transfer, transfer_edit  # noqa: E402
from stylegan_ops.checkpoints import generator_hash, load_generator  # noqa: E402

RENDERINGS = tuple(Rendering)
DEFAULT_DIRECTIONS = ("smile", "age", "mouth_open", "male", "eyeglasses")
MEGAPIXELS = (1, 4, 12)
EVAL_RES = 256  # aligned size for identity and LPIPS


@dataclass
class Target:
    name: str
    photo: np.ndarray  # uint8 [H, W, 3]
    face: Face


def targets(num: int) -> list[Target]:
    """The portraits (largest face each) then the first ``num`` held-out UTKFace files with a face."""
    found = []
    photos = sorted((data_root() / "photos").glob("*.jpg"))
    utk = split_files("utkface", "heldout")
    for path in photos + [source_dir("utkface") / name for name in utk]:
        if path.parent.name == "utkface" and sum(t.name.startswith("utk") for t in found) >= num:
            break
        photo = load_photo(path)
        faces = detect_faces(photo, upsample=1) if path.parent.name == "utkface" else detect_faces(photo)
        if faces:
            prefix = "utk:" if path.parent.name == "utkface" else ""
            found.append(Target(prefix + path.stem, photo, faces[0]))
        else:
            print(f"(no face found in {path.name}; skipped)")
    return found


def inversion_for(G, target: Target, steps: int, pti_steps: int, cache: Path) -> Inversion:
    path = cache / f"{target.name.replace(':', '_')}-pti{steps}+{pti_steps}-{generator_hash(G)}.npz"
    if path.is_file():
        try:
            return Inversion.load(path, G)
        except InversionFileError:
            pass
    aligned = align_face(target.photo, target.face, G.img_resolution)
    inv = invert(G, uint8_to_float(aligned.image), method="pti", steps=steps, pti_steps=pti_steps)
    inv.save(path, force=True)
    return inv


def aligned_at(photo: np.ndarray, face: Face, res: int) -> np.ndarray:
    return align_face(photo, face, res).image


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def transfer_ms(G, target: Target, inv: Inversion, direction, strength: float, repeats: int = 3) -> dict[int, float]:
    """ms of the transfer step for the target photo resized to each of :data:`MEGAPIXELS`."""
    R = inv.render(G)
    E = edit(inv, G, [direction.name], strength=strength).image
    h, w = target.photo.shape[:2]
    times = {}
    for mp in MEGAPIXELS:
        f = (mp * 1e6 / (h * w)) ** 0.5
        size = (round(w * f), round(h * f))
        photo = cv2.resize(target.photo, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
        sx, sy = size[0] / w, size[1] / h
        # Pixel centres at integers: scale about the -0.5 edge.
        lm = (target.face.landmarks + 0.5) * [sx, sy] - 0.5
        box = tuple(float(v) for v in (np.array(target.face.box).reshape(2, 2) * [sx, sy]).ravel())
        face = Face(box=box, landmarks=lm, score=target.face.score)
        aligned = align_face(photo, face, G.img_resolution)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            transfer_edit(photo, aligned, R, E, Rendering.NATIVE)
            best = min(best, time.perf_counter() - t0)
        times[mp] = best * 1000
    return times


def figure(target: Target, results: dict[str, np.ndarray], path: Path) -> None:
    """Input | generator paste | native, cropped to the face's square (clipped to the photo), 1:1."""
    aligned = align_face(target.photo, target.face, 64)
    lo = np.clip(np.floor(aligned.quad.min(0)).astype(int), 0, None)
    hi = np.minimum(np.ceil(aligned.quad.max(0)).astype(int), target.photo.shape[1::-1])
    crop = lambda a: a[lo[1]:hi[1], lo[0]:hi[0]]  # noqa: E731
    gap = np.full((hi[1] - lo[1], 8, 3), 255, np.uint8)
    panels = [crop(target.photo), gap, crop(results["generator"]), gap, crop(results["native"])]
    path.parent.mkdir(parents=True, exist_ok=True)
    lossy = {"quality": 92} if path.suffix.lower() in (".jpg", ".jpeg") else {}  # a 1:1 face is megabytes as PNG
    Image.fromarray(np.concatenate(panels, 1)).save(path, optimize=True, **lossy)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=8, help="held-out UTKFace faces (besides the portraits)")
    p.add_argument("--directions", nargs="+", default=list(DEFAULT_DIRECTIONS))
    p.add_argument("--strength", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=100, help="PTI pivot steps")
    p.add_argument("--pti-steps", type=int, default=200, help="PTI tuning steps")
    p.add_argument("--cache", type=Path, default=Path("out/fidelity-cache"))
    p.add_argument("--figure", type=Path, default=None,
                   help="before/after PNG of the first direction's edit on the portrait with the largest face")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    G = load_generator("default")
    clf = load_classifier()
    lpips = lpips_model("vgg")
    directions = available_directions(G)
    chosen = [resolve_direction(name, directions) for name in args.directions]
    found = targets(args.num)
    print(f"{len(found)} faces: {', '.join(t.name for t in found)}")
    figure_index = max(range(len(found)), key=lambda k: found[k].face.area)

    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    round_trip: dict[str, dict[str, list]] = {r.value: {"identical": [], "psnr": []} for r in RENDERINGS}
    outside = 1 - face_region(EVAL_RES)  # [1, 1, 256, 256], 1 = hair and background
    t_start = time.time()
    for i, target in enumerate(found):
        inv = inversion_for(G, target, args.steps, args.pti_steps, args.cache)
        aligned = align_face(target.photo, target.face, G.img_resolution)
        native_in = align_native(target.photo, aligned).image
        sharp_in = sharpness(native_in)
        eval_in = aligned_at(target.photo, target.face, EVAL_RES)
        id_in = face_descriptor(eval_in)
        score_in = attribute_scores(clf, uint8_to_float(aligned.image))
        R = inv.render(G)
        score_R = attribute_scores(clf, R)
        for rendering in RENDERINGS:
            out = transfer_edit(target.photo, aligned, R, R, rendering)
            round_trip[rendering.value]["identical"].append(bool(np.array_equal(out, target.photo)))
            round_trip[rendering.value]["psnr"].append(psnr_u8(align_native(out, aligned).image, native_in))
        figure_results = {}
        for direction in chosen:
            E = edit(inv, G, [direction.name], strength=args.strength).image
            shift_gen = float(attribute_scores(clf, E)[direction.name] - score_R[direction.name])
            changed = float((compute_transfer(R, E).mask > 0).mean())
            for rendering in RENDERINGS:
                out = transfer_edit(target.photo, aligned, R, E, rendering)
                if direction.name == chosen[0].name:
                    figure_results[rendering.value] = out
                out64 = aligned_at(out, target.face, G.img_resolution)
                shift = float(attribute_scores(clf, uint8_to_float(out64))[direction.name]
                              - score_in[direction.name])
                eval_out = aligned_at(out, target.face, EVAL_RES)
                with torch.no_grad():
                    lp = float(lpips(uint8_to_float(eval_in) * outside, uint8_to_float(eval_out) * outside))
                row = sums.setdefault((rendering.value, direction.name),
                                      {k: [] for k in ("shift", "shift_gen", "identity", "changed", "lpips", "sharp")})
                row["shift"].append(shift)
                row["shift_gen"].append(shift_gen)
                row["identity"].append(float(np.linalg.norm(face_descriptor(eval_out) - id_in)))
                row["changed"].append(1.0 if rendering is Rendering.GENERATOR else changed)
                row["lpips"].append(lp)
                row["sharp"].append(sharpness(align_native(out, aligned).image) / max(sharp_in, 1e-6))
        if i == figure_index and args.figure is not None:
            figure(target, figure_results, args.figure)
        print(f"[{i + 1}/{len(found)}] {target.name} done ({time.time() - t_start:.0f} s)", flush=True)

    print(f"\nEdits at {args.strength:+g}, means over {len(found)} faces (PTI {args.steps}+{args.pti_steps} steps)\n")
    print("| direction | rendering | kept (sum) | kept (median) | identity | changed | LPIPS out | sharpness |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for direction in chosen:
        for rendering in RENDERINGS:
            row = sums[(rendering.value, direction.name)]
            shift, shift_gen = np.array(row["shift"]), np.array(row["shift_gen"])
            per_face = shift[np.abs(shift_gen) > 1e-6] / shift_gen[np.abs(shift_gen) > 1e-6]
            print(f"| {direction.name} | {rendering.value} | {shift.sum() / shift_gen.sum():.2f} | "
                  f"{np.median(per_face):.2f} | {np.mean(row['identity']):.3f} | {np.mean(row['changed']):.0%} | "
                  f"{np.mean(row['lpips']):.4f} | {np.mean(row['sharp']):.3f} |")
    print("\nNo-edit round trip\n")
    print("| rendering | bit-identical | face PSNR (dB) |")
    print("|---|---|---:|")
    for rendering in RENDERINGS:
        rt = round_trip[rendering.value]
        psnr = np.array(rt["psnr"])
        shown = "inf" if np.isinf(psnr).all() else f"{np.mean(psnr[np.isfinite(psnr)]):.2f}"
        print(f"| {rendering.value} | {sum(rt['identical'])}/{len(rt['identical'])} | {shown} |")
    ms = transfer_ms(G, found[0], inversion_for(G, found[0], args.steps, args.pti_steps, args.cache), chosen[0],
                     args.strength)
    print(f"\nTransfer step ({chosen[0].name} {args.strength:+g}, {found[0].name} resized, {args.threads} thread(s))\n")
    print("| photo | ms |")
    print("|---|---:|")
    for mp, value in ms.items():
        print(f"| {mp} MP | {value:.0f} |")


if __name__ == "__main__":
    main()
