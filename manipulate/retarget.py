"""Retargeting a photo with InGAN: :func:`retarget` redraws a photo at another size and aspect
ratio with a GAN trained on that photo alone (:mod:`manipulate.ingan`, :mod:`manipulate.ingan_train`),
or (``method="gpnn"``, :func:`render_gpnn`) from its own patches by nearest-neighbour search
(:mod:`manipulate.gpnn`), without training.

    from manipulate import retarget
    wide = retarget("photo.jpg", (1800, 800))                  # [1, 3, 800, 1800] in [-1, 1]
    strip = retarget(photo, [(1800, 800), (840, 800)])         # one training, several shapes

Sizes are ``(width, height)`` in output pixels at the photo's own scale (photo 1200x800 ->
1800x800 is "width x1.5"); each axis may change by a factor in ``[1/4, 4]``.

- **Training** is per photo, at a working resolution (longest side ``working_size``, 128 px by
  default): :data:`DEFAULT_STEPS` steps took 2-2.5 minutes on one thread of this CPU (its other
  core busy with another training run).
- **Cache**: the trained model goes to ``ganbrush_home()/retarget/<key>/`` (``<key>``: SHA-256 of
  the photo's pixels, its size and the training config), as ``ingan.safetensors`` (G's weights
  and the working image) and ``info.json`` (written last: an entry without it is unfinished),
  beside the run's ``log.jsonl``, ``losses.png`` and sample grids of shapes. No pickle stays in
  the cache. Further shapes of the same photo are then a forward pass.
- **Native resolution**: G's output is upsampled to the requested size, and the photo's own
  detail is added where the mapping from output to input is known (the geometric transform, a
  scaling): the photo scaled to the output size minus the working image scaled the same way,
  weighted by how closely G's output follows that scaled working image (where G moved or redrew
  content, that detail would be misplaced, and the upsampled output stays as it is). Where G
  only scaled, the result is the photo scaled. The photo's own size returns the photo
  bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ganbrush_core.checks import check_int
from ganbrush_core.devices import resolve_device
from ganbrush_core.images import MAX_PIXELS, read_image, to_uint8
from ganbrush_core.io import write_text
from ganbrush_core.paths import ganbrush_home
from manipulate.gpnn import GPNNConfig, coherence, gpnn, source_coordinates, upsample_coordinates, warp
from manipulate.ingan import MIN_SIDE, Generator, resample
from manipulate.ingan_train import (
    GENERATOR_FILE,
    InGANTrainConfig,
    load_ingan,
    scaled_shape,
    train_ingan,
)

DEFAULT_STEPS = 400
MAX_STEPS = 100_000
DEFAULT_WORKING_SIZE = 128
MAX_WORKING_SIZE = 256
MAX_FACTOR = 4.0  # per axis, either way
INFO_FILE = "info.json"
CACHE_VERSION = "ingan-v1"
#: How far (mean absolute difference in [-1, 1]) G's output may stray from the scaled input
#: before the photo's detail is no longer added there: the weight is ``exp(-(d / TAU)^2)``.
DETAIL_TAU = 0.12

Size = tuple[int, int]  # (width, height)


class RetargetError(ValueError):
    """Retargeting cannot run as asked; ``str()`` is one line for the user."""


def parse_size(text: str) -> Size:
    """``"WxH"`` (e.g. ``"1800x800"``) -> ``(1800, 800)``."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise RetargetError(f"size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1800x800")
    return int(parts[0]), int(parts[1])


def parse_sizes(text: str) -> list[Size]:
    """``"WxH,WxH,..."`` -> a list of sizes."""
    sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    if not sizes:
        raise RetargetError("--sizes is empty; give WxH,WxH,...")
    return sizes


def check_size(photo_size: Size, size: Sequence[int]) -> Size:
    """``size`` as ``(w, h)`` ints if each axis is within :data:`MAX_FACTOR` of the photo's
    ``photo_size`` (either way) and the output within :data:`~ganbrush_core.images.MAX_PIXELS`;
    otherwise :class:`RetargetError` saying the allowed range."""
    if len(size) != 2:
        raise RetargetError(f"a size is (width, height), got {tuple(size)!r}")
    W, H = photo_size
    w = check_int("width", size[0], 0, 10**9)  # whole numbers; the range is checked below
    h = check_int("height", size[1], 0, 10**9)
    for name, new, old in (("width", w, W), ("height", h, H)):
        lo, hi = max(1, round(old / MAX_FACTOR)), round(old * MAX_FACTOR)
        if not lo <= new <= hi:
            raise RetargetError(f"{name} {new} is out of range for a {W}x{H} photo: each side may change at most "
                                f"{MAX_FACTOR:g}x, so the {name} must be in {lo}..{hi}")
    if w * h > MAX_PIXELS:
        raise RetargetError(f"{w}x{h} is over the limit of {MAX_PIXELS / 1e6:.0f} Mpx")
    return w, h


def working_image(photo: torch.Tensor, working_size: int) -> torch.Tensor:
    """``photo`` ``[1, 3, H, W]`` scaled (antialiased bilinear) so its longest side is
    ``working_size`` (never enlarged; each side at least :data:`~manipulate.ingan.MIN_SIDE`)."""
    H, W = photo.shape[-2:]
    s = min(1.0, working_size / max(H, W))
    shape = (max(MIN_SIDE, round(H * s)), max(MIN_SIDE, round(W * s)))
    if shape == (H, W):
        return photo.clone()
    return F.interpolate(photo, size=shape, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class RetargetModel:
    """A trained InGAN for one photo: its generator, the working image it redraws, its training
    config and ``info`` (steps, training seconds, photo size, ...); ``folder`` is its cache entry
    (``None`` when not cached)."""

    G: Generator
    image: torch.Tensor
    cfg: InGANTrainConfig
    info: dict[str, Any]
    folder: Path | None = None

    @torch.no_grad()
    def working(self, shape: tuple[int, int]) -> torch.Tensor:
        """G's output at the working resolution, ``shape`` = (height, width)."""
        return self.G(self.image, shape)


def _as_photo(photo: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    if isinstance(photo, (str, os.PathLike)):
        return read_image(photo)
    if not isinstance(photo, torch.Tensor) or photo.ndim != 4 or photo.shape[:2] != (1, 3):
        shape = list(photo.shape) if isinstance(photo, torch.Tensor) else type(photo).__name__
        raise RetargetError(f"photo must be a file or an RGB tensor [1, 3, H, W] in [-1, 1], got {shape}")
    if min(photo.shape[-2:]) < MIN_SIDE:
        raise RetargetError(f"photo is {photo.shape[-1]}x{photo.shape[-2]} px; retargeting needs at least "
                            f"{MIN_SIDE} px per side")
    return photo.float()


def cache_key(photo: torch.Tensor, cfg: InGANTrainConfig, steps: int, working_size: int) -> str:
    """SHA-256 of the photo's 8-bit pixels and size, and everything that decides the model."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "shape": list(photo.shape), "steps": steps,
                         "working_size": working_size, "config": cfg.to_dict()}, sort_keys=True).encode())
    h.update(to_uint8(photo).tobytes())
    return h.hexdigest()


def cache_root() -> Path:
    """Where trained models are cached: ``ganbrush_home()/retarget``."""
    return ganbrush_home() / "retarget"


def _load(folder: Path, device: torch.device) -> RetargetModel | None:
    if not (folder / INFO_FILE).is_file() or not (folder / GENERATOR_FILE).is_file():
        return None
    G, image, cfg, _ = load_ingan(folder / GENERATOR_FILE, device)
    info = json.loads((folder / INFO_FILE).read_text())
    return RetargetModel(G, image, cfg, {**info, "cached": True}, folder)


def fit(photo: torch.Tensor | str | os.PathLike, *, steps: int = DEFAULT_STEPS,
        working_size: int = DEFAULT_WORKING_SIZE, cfg: InGANTrainConfig | None = None,
        device: str | torch.device = "cpu", cache: bool | str | os.PathLike = True,
        progress: bool = False, on_step: Callable[[int, int], None] | None = None) -> RetargetModel:
    """The InGAN of ``photo``: from the cache (``True``: :func:`cache_root`; a folder; ``False``:
    none) when it holds one for this photo and config, else trained (``steps`` steps at
    ``working_size`` px; ``progress``: a tqdm bar; ``on_step(step, total)`` before each step) and
    cached. ``info["cached"]`` tells which."""
    steps = check_int("steps", steps, 1, MAX_STEPS)
    working_size = check_int("working size", working_size, 2 * MIN_SIDE, MAX_WORKING_SIZE)
    photo = _as_photo(photo)
    cfg = cfg or InGANTrainConfig()
    device = resolve_device(device)
    root = None if cache is False else (cache_root() if cache is True else Path(cache))
    folder = root / cache_key(photo, cfg, steps, working_size) if root is not None else None
    if folder is not None:
        model = _load(folder, device)
        if model is not None:
            return model
    image = working_image(photo, working_size)
    with tempfile.TemporaryDirectory(prefix="ganbrush-ingan-") as tmp:
        run_dir = folder if folder is not None else Path(tmp)
        t0 = time.perf_counter()
        trainer = train_ingan(image, run_dir, steps, cfg, device=device, progress=progress, on_step=on_step)
        seconds = time.perf_counter() - t0
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # the cache keeps safetensors and JSON only
        last = trainer.history[-1] if trainer.history else {}
        info = {"steps": steps, "train_seconds": round(seconds, 2), "working_size": working_size,
                "working_shape": list(image.shape[-2:]), "photo_size": [photo.shape[-1], photo.shape[-2]],
                "device": str(device), "threads": torch.get_num_threads(),
                "sample_rec_l1": last.get("sample_rec_l1")}
        if folder is not None:
            write_text(folder / INFO_FILE, json.dumps(info, indent=2) + "\n")
        G = trainer.G.eval().requires_grad_(False)
    return RetargetModel(G, image.to(device), cfg, {**info, "cached": False}, folder)


def _blur(x: torch.Tensor, radius: int = 1) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


@torch.no_grad()
def render(model: RetargetModel, photo: torch.Tensor, size: Size, detail: bool = True) -> torch.Tensor:
    """``photo`` ``[1, 3, H, W]`` retargeted to ``size`` = (width, height) at native resolution
    (see the module docstring); ``detail=False`` gives G's output plainly upsampled (bicubic)."""
    H, W = photo.shape[-2:]
    w, h = check_size((W, H), size)
    if (w, h) == (W, H):
        return photo.clone()
    device = model.image.device
    photo = photo.to(device)
    x = model.image
    factors = (h / H, w / W)
    out_w = model.working(scaled_shape(tuple(x.shape[-2:]), factors))
    up = F.interpolate(out_w, size=(h, w), mode="bicubic", align_corners=False)
    if not detail:
        return up.clamp(-1, 1).cpu()
    # The photo's detail beyond the working resolution, carried by the transform (a scaling) to
    # the output: the photo scaled to the output size minus what the working image, scaled the
    # same way, already holds. Where G only scaled, the result is the photo scaled exactly.
    scaled = resample(x, tuple(out_w.shape[-2:]))
    fine = (F.interpolate(photo, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
            - F.interpolate(scaled, size=(h, w), mode="bicubic", align_corners=False))
    return add_detail(up, fine, out_w, scaled).cpu()


def add_detail(up: torch.Tensor, fine: torch.Tensor, out_w: torch.Tensor, mapped_w: torch.Tensor,
               trust: torch.Tensor | None = None) -> torch.Tensor:
    """``up`` (a working-resolution output ``out_w`` upsampled) plus the photo's detail ``fine``
    (both ``[1, 3, h, w]``), weighted by how closely ``out_w`` follows ``mapped_w``, the working
    image carried by the same mapping as ``fine``: where they differ the output was redrawn and
    the detail would be misplaced. ``trust`` (``[1, 1]`` + ``out_w``'s size, in [0, 1]) scales the
    weight further where the mapping itself is unreliable. Clamped to [-1, 1]."""
    d = (out_w - mapped_w).abs().mean(1, keepdim=True)
    weight = torch.exp(-(d / DETAIL_TAU) ** 2)
    if trust is not None:
        weight = weight * trust
    weight = _blur(weight)
    weight = F.interpolate(weight, size=up.shape[-2:], mode="bilinear", align_corners=False)
    return (up + weight * fine).clamp(-1, 1)


@torch.no_grad()
def render_gpnn(photo: torch.Tensor, size: Size, working_size: int = DEFAULT_WORKING_SIZE,
                cfg: GPNNConfig | None = None, detail: bool = True,
                on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``photo`` ``[1, 3, H, W]`` retargeted to ``size`` = (width, height) by GPNN (no training,
    :mod:`manipulate.gpnn`) at the working resolution, then at native resolution: upsampled, plus
    the photo's own detail carried through the final patch correspondences (each output pixel's
    source pixel), where the output follows them. ``detail=False``: upsampled only. ``on_step``:
    see :func:`~manipulate.gpnn.gpnn`."""
    H, W = photo.shape[-2:]
    w, h = check_size((W, H), size)
    if (w, h) == (W, H):
        return photo.clone()
    cfg = cfg or GPNNConfig()
    x = working_image(photo.float(), working_size)
    hw, ww = x.shape[-2:]
    target = (max(cfg.patch, round(hw * h / H)), max(cfg.patch, round(ww * w / W)))
    result = gpnn(x, target, cfg, on_step=on_step)
    up = F.interpolate(result.image, size=(h, w), mode="bicubic", align_corners=False)
    if not detail:
        return up.clamp(-1, 1)
    coords = source_coordinates(result.source_of, (hw, ww), target, cfg.patch)
    fine_coords = upsample_coordinates(coords, (h / target[0], w / target[1]), (h, w))
    smooth = F.interpolate(x, size=(H, W), mode="bicubic", align_corners=False)  # the working image, photo-sized
    fine = warp(photo.float(), fine_coords, (hw, ww)) - warp(smooth, fine_coords, (hw, ww))
    # Where neighbouring output pixels come from unrelated places (seams between copied regions,
    # blends of several sources), detail carried per working pixel would tile the photo's
    # texture in blocks: those places keep the smooth upsampled output.
    trust = coherence(coords)[None, None]
    return add_detail(up, fine, result.image, warp(x, coords, (hw, ww)), trust)


class Method(str, Enum):
    """How :func:`retarget` redraws: ``ingan`` (a GAN trained on the photo, then any shape in a
    forward pass) or ``gpnn`` (patch nearest neighbours, no training, each shape searched anew)."""

    INGAN = "ingan"
    GPNN = "gpnn"


def parse_method(text: str | Method) -> Method:
    try:
        return Method(text)
    except ValueError:
        raise RetargetError(f"unknown retargeting method {text!r}; use one of: "
                            + ", ".join(m.value for m in Method)) from None


def retarget(photo: torch.Tensor | str | os.PathLike, size: Size | Sequence[Size], *, steps: int = DEFAULT_STEPS,
             working_size: int = DEFAULT_WORKING_SIZE, device: str | torch.device = "cpu",
             cache: bool | str | os.PathLike = True, cfg: InGANTrainConfig | None = None, detail: bool = True,
             progress: bool = False, on_step: Callable[[int, int], None] | None = None,
             method: str | Method = Method.INGAN) -> torch.Tensor | list[torch.Tensor]:
    """``photo`` (a file, or RGB ``[1, 3, H, W]`` in [-1, 1]) redrawn at ``size`` = (width,
    height), or at each of a list of sizes (one training), at native resolution: ``[1, 3, h, w]``
    in [-1, 1] on the CPU (a list for a list). Sizes are checked before any training; see
    :func:`fit` for ``steps``, ``working_size``, ``cache``, ``cfg``, ``progress``, ``on_step``
    and :func:`render` for ``detail``. ``method="gpnn"`` (:func:`render_gpnn`, on the CPU) trains
    nothing and ignores ``steps``, ``cache`` and ``cfg`` (``on_step``: its search rounds, per size)."""
    method = parse_method(method)
    photo = _as_photo(photo)
    H, W = photo.shape[-2:]
    one = len(size) == 2 and all(isinstance(v, numbers.Real) for v in size)
    sizes = [check_size((W, H), s) for s in ([size] if one else size)]  # type: ignore[list-item]
    if not sizes:
        raise RetargetError("no output size given")
    working_size = check_int("working size", working_size, 2 * MIN_SIDE, MAX_WORKING_SIZE)
    if all(s == (W, H) for s in sizes):
        outs = [photo.clone() for _ in sizes]
    elif method is Method.GPNN:
        outs = [render_gpnn(photo, s, working_size, detail=detail, on_step=on_step)
                for s in tqdm(sizes, "gpnn", disable=not progress)]
    else:
        model = fit(photo, steps=steps, working_size=working_size, cfg=cfg, device=device, cache=cache,
                    progress=progress, on_step=on_step)
        outs = [render(model, photo, s, detail) for s in sizes]
    return outs[0] if one else outs


def strip(images: Sequence[torch.Tensor], gap: int = 8) -> torch.Tensor:
    """Images ``[1, 3, h_i, w_i]`` side by side, top-aligned, ``gap`` px of white between them."""
    h = max(i.shape[-2] for i in images)
    parts = []
    for k, im in enumerate(images):
        parts.append(F.pad(im, (0, 0, 0, h - im.shape[-2]), value=1.0))
        if k < len(images) - 1:
            parts.append(torch.ones(1, 3, h, gap))
    return torch.cat(parts, dim=3)
