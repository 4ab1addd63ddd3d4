"""Compare inversion methods (DESIGN.md section 6) on any faces and any generator.

Per method (any of :data:`inversion.project.METHODS`) and budget, means over the faces of:
LPIPS (VGG), PSNR (dB), SSIM, identity distance (dlib face descriptor, lower is better; the same
person is usually below 0.6), seconds per image on this machine, and the steps taken.

Budgets, both measured in the same run:

- ``"steps"`` (equal steps): every method gets ``steps`` optimisation steps in total;
- ``"seconds"`` (equal wall time): every method gets ``seconds`` per image, its steps set from its
  seconds per step, timed on the first face before the comparison.

Which phases a method has is measured, not listed: :func:`probe` runs it with more steps of each
setting (``steps``: the W / W+ / pivot phase; ``pti_steps``: generator tuning) and keeps the
settings that change how many steps it takes; it also times the s/step of each phase and the
fixed cost of a run, which the seconds budget pays first. A method with both phases gives
:data:`PTI_PIVOT_SHARE` of either budget to the first; a method with none (an encoder: one pass)
is simply run once and timed, under each budget.

Faces are float32 ``[N, 3, R, R]`` in [-1, 1] at the generator's resolution ``R``: held-out faces
(framed as the training data), or a folder of photos, each either detected and aligned with dlib
or taken as it is when it already is a square crop at ``R`` px (:func:`faces_from_folder`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ganbrush_compare.folders import image_files
from ganbrush_compare.report import Column, Report
from ganbrush_core.images import to_uint8, uint8_to_float
from ganbrush_core.metrics import psnr, ssim

BUDGETS = ("steps", "seconds")
#: The invert() settings that set the length of a phase, in phase order.
PHASES = ("steps", "pti_steps")
#: Share of a budget given to the first of two phases (PTI's pivot); the tuning gains most
#: (the paper: 450 pivot and 350 tuning steps at 1024 px, without a time limit).
PTI_PIVOT_SHARE = 0.25
ALIGN_MODES = ("auto", "always", "never")

COLUMNS = [Column("budget_label", "budget", left=True), Column("method", "method", left=True),
           Column("steps", "steps", "d"), Column("lpips", "LPIPS (VGG)", ".4f"), Column("psnr", "PSNR (dB)", ".2f"),
           Column("ssim", "SSIM", ".4f"), Column("identity", "identity dist", ".3f"),
           Column("seconds", "s / image", ".2f")]

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Faces:
    """Target faces ``[N, 3, R, R]`` in [-1, 1], with a name and how each was obtained
    (``"held-out"``, ``"aligned"`` by dlib, or ``"as given"``); ``skipped``: files left out, with
    why; ``framing``: the crop they are in (for the identity descriptor)."""

    images: torch.Tensor
    names: list[str]
    how: list[str]
    framing: str = "ganbrush"
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = {h: self.how.count(h) for h in dict.fromkeys(self.how)}
        text = ", ".join(f"{n} {h}" for h, n in counts.items())
        return text + (f"; {len(self.skipped)} skipped" if self.skipped else "")


def held_out(num: int, res: int) -> Faces:
    """The first ``num`` held-out faces (alternating CelebA / UTKFace) at ``res`` px."""
    from ganbrush_core.faces import held_out_faces

    images = held_out_faces(num, res)
    return Faces(images, [f"held-out {i}" for i in range(len(images))], ["held-out"] * len(images))


def faces_from_folder(folder: str | os.PathLike, res: int, align: str = "auto", framing: str = "ganbrush",
                      detector: str = "hog", log: Log = _stderr) -> Faces:
    """Every photo in ``folder`` as a target face at ``res`` px.

    ``align``: ``"auto"`` takes a square photo of exactly ``res`` px as an aligned crop as it is
    and detects + aligns (dlib, largest face, ``framing``) every other; ``"always"`` aligns every
    photo; ``"never"`` resizes every photo to ``res`` x ``res`` (Lanczos) as it is. A photo with
    no face found is skipped (and listed); no face at all is an error.
    """
    from PIL import Image

    from inversion.align import NoFaceError, align_face, detect_faces
    from inversion.photos import load_photo

    if align not in ALIGN_MODES:
        raise ValueError(f"unknown --align {align!r}; choose one of {', '.join(ALIGN_MODES)}")
    faces, names, how, skipped = [], [], [], []
    for path in image_files(folder):
        photo = load_photo(path)
        h, w = photo.shape[:2]
        if align == "never" or (align == "auto" and (h, w) == (res, res)):
            face = photo if (h, w) == (res, res) else np.asarray(
                Image.fromarray(photo).resize((res, res), Image.Resampling.LANCZOS))
            faces.append(face)
            how.append("as given")
        else:
            try:
                found = detect_faces(photo, detector=detector)
            except NoFaceError:
                skipped.append(f"{path.name}: no face found")
                log(f"ganbrush: warning: {path}: no face found; skipped")
                continue
            faces.append(align_face(photo, found[0], res, framing=framing).image)
            how.append("aligned")
        names.append(path.name)
    if not faces:
        raise ValueError(f"--images {folder}: no face found in any of its photos")
    return Faces(uint8_to_float(np.stack(faces)), names, how, framing, skipped)


def _invert(G: nn.Module, image: torch.Tensor, method: str, perceptual: nn.Module, **settings):
    from inversion.project import invert

    return invert(G, image, method=method, perceptual=perceptual, **settings)


@dataclass
class Speed:
    """A method's cost on one face: ``per_step`` seconds per step of each phase it has, keyed by
    the invert() setting that sets the phase's length (``{}`` for a one-pass method), and
    ``fixed`` seconds per run besides the steps (w statistics, setup, the final render)."""

    per_step: dict[str, float]
    fixed: float

    def describe(self) -> str:
        steps = " + ".join(f"{s:.3f} s/step ({p})" for p, s in self.per_step.items()) or "one pass"
        return f"{steps}, {self.fixed:.2f} s fixed"


def probe(G: nn.Module, image: torch.Tensor, method: str, perceptual: nn.Module, k: int = 8) -> Speed:
    """Time ``method`` on one face ``[1, 3, R, R]``. For each setting in :data:`PHASES` it runs
    with ``k`` and ``2k`` more steps of it than the least; the setting is a phase when that
    changes the steps taken, and its s/step is the time difference over the step difference
    (least run to the longest, the widest span), so fixed costs do not count; the fixed cost is
    what the least run takes beyond its steps.

    Each timed run is the faster of two (noise on a busy machine only ever adds time). Steps
    much faster than what noise is left (a tiny generator) can still give a difference of zero or
    less; the s/step is then the longest run's seconds over its steps, an upper bound, so the
    seconds budget plans too few steps rather than thousands."""
    def timed(**settings):
        runs = [_invert(G, image, method, perceptual, **settings) for _ in range(2)]
        return min(runs, key=lambda r: r.seconds)

    least = {"steps": 1, "pti_steps": 0}
    _invert(G, image, method, perceptual, **least)  # warm-up: first-call costs are not per-step costs
    base = timed(**least)
    per_step = {}
    for phase in PHASES:
        a = _invert(G, image, method, perceptual, **{**least, phase: least[phase] + k})
        b = timed(**{**least, phase: least[phase] + 2 * k})
        if b.steps > a.steps:
            slope = (b.seconds - base.seconds) / (b.steps - base.steps)
            per_step[phase] = slope if slope > 0 else b.seconds / b.steps
    fixed = base.seconds - sum(least[p] * s for p, s in per_step.items())
    return Speed(per_step, max(fixed, 0.0))


def phases_of(G: nn.Module, image: torch.Tensor, method: str, perceptual: nn.Module) -> list[str]:
    """The settings of :data:`PHASES` that ``method`` takes steps of, found with one or two runs
    of at most three steps (what the steps budget needs; :func:`probe` also times them)."""
    least = {"steps": 1, "pti_steps": 1}
    taken = _invert(G, image, method, perceptual, **least).steps
    if taken != 1:
        return list(PHASES) if taken == 2 else []
    more = _invert(G, image, method, perceptual, **{**least, "steps": 2}).steps
    return ["steps"] if more == 2 else ["pti_steps"]


def plan_steps(budget: str, steps: int, seconds: float, speed: Speed) -> dict[str, int]:
    """The invert() step settings of one method under one budget (``{}``: run it once as it is).
    With two phases the first gets :data:`PTI_PIVOT_SHARE` of the budget, the second the rest;
    the seconds budget is what is left of ``seconds`` after the method's fixed cost (at least one
    step a phase, at most invert()'s ``MAX_STEPS``)."""
    from inversion.project import MAX_STEPS

    phases = [p for p in PHASES if p in speed.per_step]
    if not phases:
        return {}
    shares = dict(zip(phases, (PTI_PIVOT_SHARE, 1 - PTI_PIVOT_SHARE))) if len(phases) == 2 else {phases[0]: 1.0}
    if budget == "steps":
        if len(phases) == 2:
            first = max(1, round(steps * shares[phases[0]]))
            return {phases[0]: first, phases[1]: max(1, steps - first)}
        return {phases[0]: steps}
    if budget == "seconds":
        left = max(seconds - speed.fixed, 0.0)
        return {p: min(MAX_STEPS, max(1, int(left * shares[p] / speed.per_step[p]))) for p in phases}
    raise ValueError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")


def edit_shifts(G: nn.Module, inversions: Sequence, edits: Sequence[str], strength: float, directions: dict,
                classifier: nn.Module) -> dict[str, float]:
    """Editability: for each name in ``edits`` (a direction and the attribute classifier's score
    of the same name, e.g. ``smiling``, ``age``, ``male``), the mean change of that score when the
    direction is applied at ``strength`` to each inversion (rendered with its own generator: PTI's
    tuned one), against its unedited reconstruction."""
    from manipulate.attributes import attribute_scores
    from manipulate.edit import edit

    shifts = {}
    for name in edits:
        values = []
        for inv in inversions:
            edited = edit(inv, G, f"{name}={strength:g}", directions=directions).image
            scores = attribute_scores(classifier, torch.cat([inv.reconstruction, edited]))[name]
            values.append(float(scores[1] - scores[0]))
        shifts[name] = float(np.mean(values))
    return shifts


def editability_tools(G: nn.Module, edits: Sequence[str]) -> tuple[dict, nn.Module]:
    """The directions and attribute classifier that :func:`edit_shifts` needs for ``G``: its
    shipped InterFaceGAN directions (found by the generator's hash) and the shipped classifier;
    :class:`ValueError` naming what is missing."""
    from manipulate.attributes import load_classifier
    from manipulate.edit import available_directions

    directions = available_directions(G)
    missing = [e for e in edits if e not in directions]
    if missing:
        raise ValueError(f"no direction named {', '.join(missing)} for this generator (it has: "
                         f"{', '.join(directions) or 'none'}); editability needs named directions")
    classifier = load_classifier(device=G.w_avg.device)
    unknown = [e for e in edits if e not in classifier.names]
    if unknown:
        raise ValueError(f"the attribute classifier has no score {', '.join(unknown)}; choose from "
                         f"{', '.join(classifier.names)}")
    return directions, classifier


def evaluate(G: nn.Module, faces: Faces, method: str, plan: dict[str, int], perceptual: nn.Module,
             target_ids: Sequence[np.ndarray], keep: list | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Invert each face alone with ``plan``; the means of the metrics and the reconstructions
    ``[N, 3, R, R]`` (CPU). ``keep``: a list the :class:`~inversion.Inversion` of each face is
    appended to."""
    from inversion.identity import identity_distance

    device = G.w_avg.device
    per_image, recons = [], []
    for image, target_id in zip(faces.images, target_ids):
        result = _invert(G, image[None], method, perceptual, **plan)
        recon, target = result.reconstruction, image[None]
        with torch.no_grad():
            per_image.append({
                "lpips": float(perceptual(recon.to(device), target.to(device))),
                "psnr": float(psnr(recon, target)), "ssim": float(ssim(recon, target)),
                "identity": identity_distance(to_uint8(recon)[0], target_id, faces.framing),
                "seconds": result.seconds, "steps": result.steps})
        recons.append(recon)
        if keep is not None:
            keep.append(result)
    return {k: float(np.mean([r[k] for r in per_image])) for k in per_image[0]}, torch.cat(recons)


def _relative_shifts(rows: list[dict], edits: Sequence[str]) -> None:
    """Give each row ``edit_<name>`` = its shift / the ``w+`` row's shift (NaN without ``w+``)."""
    base = next((r for r in rows if r["method"] == "w+"), None)
    for r in rows:
        for e in edits:
            ref = base[f"shift_{e}"] if base is not None else math.nan
            r[f"edit_{e}"] = r[f"shift_{e}"] / ref if ref and math.isfinite(ref) else math.nan


def compare_inversion(G: nn.Module, faces: Faces, methods: Sequence[str], budgets: Sequence[str] = BUDGETS,
                      steps: int = 300, seconds: float | Sequence[float] = 60.0, probe_steps: int = 8,
                      grid_faces: int = 8, perceptual: nn.Module | None = None, generator_name: str = "",
                      skip_unavailable: bool = False, edits: Sequence[str] = (), edit_strength: float = 3.0,
                      log: Log = _stderr) -> Report:
    """Run every method under every budget on ``faces`` and return the :class:`Report` (rows in
    budget order, then method order; grid: targets, then each method and budget, one column per
    face up to ``grid_faces``). ``seconds`` may list several equal-wall-time budgets (one set of
    rows each). Runs that would repeat one already made (a one-pass method under the second
    budget) reuse its numbers. ``log`` gets one line per finished row.
    ``skip_unavailable``: a method whose first run raises a user error (say, an encoder trained
    for another generator) is left out with a warning instead of stopping the comparison.
    ``edits`` (e.g. ``("smiling", "age", "male")``): also measure editability (:func:`edit_shifts`
    at ``edit_strength``); each row gets the shift of every edit and its ratio to the shift on
    ``w+`` latents under the same budget (when ``w+`` is among the methods)."""
    from ganbrush_core.metrics import lpips_model
    from inversion.identity import face_descriptor
    from inversion.project import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown inversion method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    bad = [b for b in budgets if b not in BUDGETS]
    if bad or not budgets:
        raise ValueError(f"unknown budget {', '.join(bad) or '(none)'}; choose from {', '.join(BUDGETS)}")
    if perceptual is None:
        perceptual = lpips_model("vgg", device=G.w_avg.device)
    seconds_list = [float(seconds)] if isinstance(seconds, (int, float)) else [float(x) for x in seconds]
    if "seconds" in budgets and not seconds_list:
        raise ValueError("the seconds budget needs at least one number of seconds")
    tools = editability_tools(G, edits) if edits else None
    target_ids = [face_descriptor(f, faces.framing) for f in to_uint8(faces.images)]  # once, not per method
    # Timing runs only for the seconds budget; the steps budget needs only each method's phases.
    timed = "seconds" in budgets
    speeds = {}
    for m in methods:
        try:
            speeds[m] = probe(G, faces.images[:1], m, perceptual, probe_steps) if timed else \
                Speed(dict.fromkeys(phases_of(G, faces.images[:1], m, perceptual), math.nan), math.nan)
        except (ValueError, OSError, RuntimeError) as e:
            if not skip_unavailable:
                raise
            log(f"ganbrush: warning: method {m} skipped: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}")
    methods = list(speeds)
    if not methods:
        raise ValueError("none of the inversion methods can run on this generator")
    if timed:
        log("speed on one face: " + "; ".join(f"{m} {v.describe()}" for m, v in speeds.items()))
    cols = min(grid_faces, len(faces.images))
    rows, tiles, legend = [], list(faces.images[:cols]), ["targets"]
    done: dict[tuple, tuple[dict, torch.Tensor]] = {}
    runs = [(b, sec) for b in budgets for sec in (seconds_list if b == "seconds" else [math.nan])]
    for budget, sec in runs:
        label = f"{steps} steps" if budget == "steps" else f"{sec:g} s"
        first_row = len(rows)
        for method in methods:
            plan = plan_steps(budget, steps, sec, speeds[method])
            key = (method, tuple(sorted(plan.items())))
            if key not in done:
                kept: list = []
                done[key] = (*evaluate(G, faces, method, plan, perceptual, target_ids, keep=kept),
                             edit_shifts(G, kept, edits, edit_strength, *tools) if tools else {})
            means, recons, shifts = done[key]
            rows.append({"budget": budget, "budget_label": label, "method": method, "steps": round(means["steps"]),
                         **{k: means[k] for k in ("lpips", "psnr", "ssim", "identity", "seconds")}, "plan": plan,
                         **{f"shift_{e}": v for e, v in shifts.items()}})
            tiles += list(recons[:cols])
            legend.append(f"{method} ({label})")
            r = rows[-1]
            log(f"  {label:9s} {method:5s}: LPIPS {r['lpips']:.4f} PSNR {r['psnr']:.2f} SSIM {r['ssim']:.4f} "
                f"id {r['identity']:.3f} {r['seconds']:.1f} s/img")
        _relative_shifts(rows[first_row:], edits)
    title = (f"Inversion on {len(faces.images)} faces ({faces.describe()}), generator {generator_name} "
             f"({G.img_resolution} px), torch threads {torch.get_num_threads()}")
    meta = {"faces": faces.names, "how": faces.how, "skipped": faces.skipped, "framing": faces.framing,
            "resolution": G.img_resolution, "methods": list(methods), "budgets": list(budgets), "steps": steps,
            "seconds": seconds, "pti_pivot_share": PTI_PIVOT_SHARE, "torch_threads": torch.get_num_threads(),
            "speed": {m: asdict(v) for m, v in speeds.items()} if timed else None}
    notes = [f"skipped: {s}" for s in faces.skipped]
    columns = COLUMNS + [Column(f"edit_{e}", f"{e} {edit_strength:+g} (x w+)", ".2f") for e in edits]
    if edits:
        notes.append(f"editability: the attribute classifier's score shift of each named direction at "
                     f"{edit_strength:+g} on the method's latent (its own generator for PTI), as a ratio of the same "
                     f"edit's shift on w+ latents under the same budget; absolute shifts in the CSV/JSON "
                     f"(shift_<name>: logits, years for age)")
    meta.update(edits=list(edits), edit_strength=edit_strength, seconds=seconds_list)
    return Report("inversion", title, columns, rows, notes=notes, meta=meta, tiles=tiles, grid_cols=cols,
                  grid_legend=legend)

