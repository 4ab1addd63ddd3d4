"""The edit API: named directions, edits written as text, and one :func:`edit` call.

Directions come from ``.npz`` files of :func:`manipulate.directions.save_directions`: the files
shipped in ``manipulate/weights`` (used only for the generator they were made for, matched by
generator hash) plus any the caller passes. Names are matched case-insensitively, through
:data:`ALIASES` (``"smile"`` finds ``"smiling"``).

An edit is a named direction, a strength (in the direction's own units: one unit moves ``w`` by
``direction.scale``, about one standard deviation of sampled ``w`` along it) and an optional
layer range (half-open ``ws`` indices; ``None`` keeps the direction's own range). Users write
edits as ``"smile=2"``, ``"age=-1.5"`` or ``"smile=2@0-5"`` (layers FIRST-LAST inclusive).

    from manipulate import edit
    result = edit(inversion, G, "smile", strength=2)          # result.image [1, 3, H, W] in [-1, 1]
    result = edit(inversion, G, ["smile=2", "age=-1@0-5"], conditions=["male"])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ganbrush_core.checks import check_float
from ganbrush_core.devices import on_device
from inversion.result import Inversion
from manipulate.directions import (
    Direction,
    LayerRange,
    check_layers,
    load_directions,
    parse_layers,
    read_generator_hash,
)
from manipulate.edits import move
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: What users type -> the direction name in the files (lower case, CelebA attribute names).
ALIASES: dict[str, str] = {
    "smile": "smiling",
    "glasses": "eyeglasses",
    "mouth_open": "mouth_slightly_open",
    "open_mouth": "mouth_slightly_open",
    "makeup": "heavy_makeup",
    "hat": "wearing_hat",
    "blond": "blond_hair",
    "blonde": "blond_hair",
    "black": "black_hair",
    "bald_head": "bald",
    "old": "age",
    "older": "age",
}


#: Largest |strength| of an edit, in direction units (~1 standard deviation of sampled ``w`` each).
#: Realistic edits stay within +-3 (the app's sliders reach 5); far beyond, the latent leaves the
#: generator's domain and the photo gets noise pasted into it.
MAX_STRENGTH = 10.0


def check_strength(strength: object) -> float:
    """``strength`` as a float; :class:`ValueError` unless it is finite with ``|strength| <=``
    :data:`MAX_STRENGTH`. The one check of edit strengths (API, CLI, pipeline, app)."""
    return check_float("edit strength", strength, -MAX_STRENGTH, MAX_STRENGTH)


class UnknownDirectionError(ValueError):
    """A direction name that none of the loaded directions files holds."""


class LatentMismatchError(ValueError):
    """Latents that do not fit the given generator (another generator's, or a malformed array)."""


def shipped_directions_files() -> list[Path]:
    """The directions files shipped with ganbrush (``manipulate/weights/*.npz``), sorted by name."""
    return sorted(WEIGHTS_DIR.glob("*.npz"))


def _file_generator_hash(path: Path) -> str:
    """The generator hash recorded in a directions file (read without loading its vectors)."""
    return read_generator_hash(path)


def available_directions(G: Generator, files: Sequence[str | os.PathLike] = ()) -> dict[str, Direction]:
    """Every direction usable with ``G``: those of the shipped files made for ``G`` (files of
    other generators are skipped silently), then those of ``files`` (a file made for another
    generator raises :class:`DirectionsFileError`). Later entries win on name clashes."""
    wanted = generator_hash(G)
    found: dict[str, Direction] = {}
    for path in shipped_directions_files():
        if _file_generator_hash(path) == wanted:
            found.update(load_directions(path, G))
    for path in files:
        found.update(load_directions(path, G))
    return found


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def resolve_direction(name: str, directions: Mapping[str, Direction]) -> Direction:
    """The direction called ``name``: exact, then case-insensitive (``-`` and spaces read as
    ``_``), then through :data:`ALIASES` (also before a per-layer suffix: ``"smile@L3"``).
    Raises :class:`UnknownDirectionError` listing the names."""
    if name in directions:
        return directions[name]
    by_key = {_key(k): d for k, d in directions.items()}
    key = _key(name)
    if key in by_key:
        return by_key[key]
    base, at, layer_tag = key.partition("@")  # per-layer variants such as "smiling@L3" alias too
    aliased = ALIASES.get(base, base) + at + layer_tag
    if aliased in by_key:
        return by_key[aliased]
    names = ", ".join(sorted(directions)) or "none"
    raise UnknownDirectionError(
        f"unknown direction {name!r}; available: {names} (add more with `ganbrush directions sefa|ganspace "
        f"--out DIR` and pass DIR/<source>.npz: --directions, or files= in Python)")


@dataclass(frozen=True)
class Edit:
    """Move ``strength`` units along the named direction on ``layers`` (half-open ``ws`` indices;
    ``None`` = the direction's own range)."""

    direction: str
    strength: float
    layers: LayerRange | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_strength(self.strength))  # frozen: set once, checked


def parse_edit(text: str) -> Edit:
    """``"smile=2"``, ``"age=-1.5"``, ``"smile=2@0-5"`` (layers FIRST-LAST inclusive) -> :class:`Edit`."""
    name, sep, rest = text.partition("=")
    value, at, layer_text = rest.partition("@")
    try:
        strength = float(value)
        number = True
    except ValueError:
        strength, number = float("nan"), False
    if not sep or not name.strip() or not number or (at and not layer_text.strip()):
        raise ValueError(f"bad edit {text!r}: write NAME=STRENGTH or NAME=STRENGTH@FIRST-LAST, e.g. smile=2 or "
                         f"smile=2@0-5")
    try:
        check_strength(strength)
    except ValueError as e:
        raise ValueError(f"bad edit {text!r}: {e}") from None
    return Edit(name.strip(), strength, parse_layers(layer_text.strip()) if at else None)


def _as_edits(edits: Edit | str | Sequence[Edit | str], strength: float | None) -> list[Edit]:
    items = [edits] if isinstance(edits, (Edit, str)) else list(edits)
    if not items:
        raise ValueError("no edit given: pass a direction name with strength=, or edits like 'smile=2'")
    out = []
    for item in items:
        explicit = isinstance(item, Edit) or "=" in item
        if explicit and strength is not None:
            raise ValueError(f"edit {item!r} carries its own strength; pass strength= only with bare direction names")
        if isinstance(item, Edit):
            out.append(item)
        elif explicit:
            out.append(parse_edit(item))
        elif strength is None:
            raise ValueError(f"no strength for {item!r}: pass strength=S or write it as {item}=S")
        else:
            out.append(Edit(item.strip(), float(strength)))
    return out


def _check_ws(ws: torch.Tensor, G: Generator) -> None:
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise LatentMismatchError(f"latents of shape {tuple(ws.shape)} do not fit this generator, which takes "
                                  f"[N, {G.num_ws}, {G.w_dim}]; invert the photo again with this generator")


@dataclass
class EditResult:
    """Edited latents, their render (``[N, 3, H, W]`` in [-1, 1], or ``None`` when not rendered)
    and the generator that renders them (PTI: the inversion's tuned copy)."""

    ws: torch.Tensor
    image: torch.Tensor | None
    generator: Generator


def edit(latent: Inversion | torch.Tensor, G: Generator, edits: Edit | str | Sequence[Edit | str],
         strength: float | None = None, layers: LayerRange | None = None, conditions: Sequence[str] = (),
         directions: Mapping[str, Direction] | None = None, render: bool = True,
         device: str | torch.device | None = None) -> EditResult:
    """Apply ``edits`` in order (their moves add up) to ``latent`` and render the result.

    ``latent``: an :class:`~inversion.Inversion` (refused if made with another generator; PTI
    renders with its tuned generator; its noise maps are used) or ``ws`` ``[N, num_ws, w_dim]``
    (rendered with constant noise). ``edits``: :class:`Edit` objects, strings like ``"smile=2"``,
    or bare names with ``strength`` (``edit(inv, G, "smile", strength=2)``). ``layers`` overrides
    every edit's range. ``conditions``: names whose vectors are projected out of each edit's
    direction, so those attributes stay put (InterFaceGAN's conditional editing); an edit's own
    direction is never projected out of itself.
    ``directions`` defaults to :func:`available_directions` of ``G``. ``device``: where the
    render runs (see :mod:`ganbrush_core.devices`; ``None``: ``G``'s device); ``ws`` and
    ``image`` come back on the CPU, ``generator`` stays on that device.
    """
    plan = _as_edits(edits, strength)
    G = on_device(G, device)
    if isinstance(latent, Inversion):
        latent.check_generator(G)
        ws, noises, renderer = latent.ws, latent.noises, latent.generator(G)
    else:
        ws, noises, renderer = latent, None, G
    _check_ws(ws, G)
    if layers is not None:
        layers = check_layers(G, layers)
    if directions is None:
        directions = available_directions(G)
    held = [resolve_direction(name, directions) for name in conditions]
    device = G.w_avg.device
    out = ws.detach().to(device=device, dtype=torch.float32)
    for e in plan:
        direction = resolve_direction(e.direction, directions)
        others = [c for c in held if c.name != direction.name]
        span = layers if layers is not None else (check_layers(G, e.layers) if e.layers is not None else None)
        out = move(out, direction, e.strength, span, conditions=others)
    image = None
    if render:
        with torch.no_grad():
            image = renderer.synthesis(out, noises=None if noises is None else [m.to(device) for m in noises]).cpu()
    return EditResult(ws=out.cpu(), image=image, generator=renderer)
