"""The whole ganbrush pipeline as one call, as its steps, and as ``ganbrush pipeline``.

photo -> faces (dlib) -> one face aligned to the generator's framing -> inversion (or a saved
``.npz``) -> edits along named directions -> optional EdgeConnect regeneration of a masked region
-> the result in the photo at the photo's own resolution.

Rendering (:class:`~manipulate.transfer.Rendering`): by default (``native``) the generator only
supplies the *change*: the edit is carried to the photo's own pixels as a flow + low-frequency
residual (:mod:`manipulate.transfer`), and a regenerated region is filled at the generator's
resolution, scaled up and given the photo's own fine detail by contextual residual aggregation
(:mod:`inpainting.residual_aggregation`). Without an edit or a mask the photo comes back
bit-identical; pixels outside what changed never change. ``generator`` pastes the generator's
render scaled up (the behaviour before native rendering), for comparison.

The Gradio app (``app.py``) calls only the step functions here, between user interactions;
:func:`run_pipeline` chains them for the CLI and for Python.

Conventions: photos and faces are uint8 ``[H, W, 3]`` RGB; masks are bool ``[H, W]`` with
**True = region to regenerate** (mask files: white = regenerate); edge maps are float32
``[H, W]`` in [0, 1] with 1 = edge.

    from ganbrush_pipeline import PipelineOptions, run_pipeline
    result = run_pipeline(photo, PipelineOptions(edits=("smile=2", "age=-1")))
    result.photo                                  # the edited photo, uint8 [H, W, 3]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ganbrush_core.devices import add_device_argument, module_device, on_device, resolve_device
from ganbrush_core.images import IMAGE_SUFFIX_HINT, image_suffixes, to_uint8, uint8_to_float
from ganbrush_core.io import check_output, write_all
from ganbrush_core.masks import read_mask
from inpainting import GLCIC_METHODS, inpaint, predict_edges
from inpainting import Method as InpaintMethod
from inpainting import default_method as default_inpaint_method
from inpainting import ready_methods as ready_inpaint_methods
from inpainting.residual_aggregation import inpaint_native
from inversion import AlignedFace, Face, Inversion, NoFaceError, align_face, detect_faces, invert, paste_back
from inversion.align import Detector, align_native, check_feather, paste_inside, pick_face
from inversion.project import projection_settings
from manipulate import Direction, Edit, LayerRange, available_directions, edit, parse_edit, parse_layers
from manipulate.directions import sefa
from manipulate.transfer import Rendering, transfer_edit
from stylegan_ops import load_generator
from stylegan_ops.networks import Generator

#: Called after every inversion step with (step, total, losses), like :func:`inversion.invert`'s.
ProgressFn = Callable[[int, int, dict[str, float]], None]

#: When no named (or other) directions are shipped for a generator, this many SeFa directions are
#: computed on the fly (closed form, well under a second) so there is always something to edit.
FALLBACK_SEFA = 10
#: ``PipelineOptions.method`` value (the CLI's default) for the best method per second:
#: ``encoder+pti`` where an encoder fits the generator, else ``w+``.
AUTO_METHOD = "auto"

#: A mask may cover at most this fraction of the face's aligned square. Beyond it the inpainter has
#: nearly nothing of the face to fill from and pastes a blank square over the face.
MAX_MASK_COVERAGE = 0.9

EMPTY_MASK_MESSAGE = ("the mask marks nothing on the face: paint the region to regenerate in white "
                      "(or leave the mask out)")


class PipelineError(ValueError):
    """Input the pipeline cannot use (a face index out of range, a mask of the wrong size, ...)."""


@dataclass(frozen=True)
class PipelineOptions:
    """Everything :func:`run_pipeline` does besides the photo.

    ``edits``: :class:`~manipulate.Edit` objects or text like ``"smile=2"``, ``"age=-1@0-5"``
    (none: the face is the inversion's reconstruction). ``layers``: a half-open ``ws`` range (or
    text ``"FIRST-LAST"``, inclusive) that overrides every edit's own. ``mask``: bool/0-1
    ``[H, W]`` (True = regenerate) of the photo's size or of the aligned face's size, or a mask
    file (white = regenerate). ``edges``: float ``[r, r]`` edges in the aligned frame that
    replace EdgeConnect's prediction inside the mask. ``face``: index into the faces found,
    largest first. ``inversion``: a ready :class:`~inversion.Inversion` or its ``.npz`` (skips
    the optimisation; ``method``/``steps`` are then unused). ``directions_files``: extra
    directions ``.npz`` files. ``render``: ``"native"`` (the photo's own pixels carry the change)
    or ``"generator"`` / ``"residual"`` for comparison (see :class:`~manipulate.transfer.Rendering`).
    ``device``: where the generator, LPIPS and EdgeConnect run (``"cpu"``, ``"cuda"``, ... see
    :mod:`ganbrush_core.devices`); ``None``: the given generator's device, or ``"auto"`` for the
    shipped one. dlib and OpenCV run on the CPU. ``mixed_precision``: the inversion's
    :attr:`~inversion.project.ProjectionSettings.mixed_precision` (``None``: its default).
    """

    edits: Sequence[Edit | str] = ()
    layers: LayerRange | str | None = None
    mask: np.ndarray | str | os.PathLike | None = None
    edges: np.ndarray | None = None
    face: int = 0
    detector: Detector = "hog"
    method: str = "w+"  # or AUTO_METHOD: inversion.project.default_method(G)
    steps: int | None = None
    inversion: Inversion | str | os.PathLike | None = None
    feather: float = 0.1
    inpaint_method: str | None = None  # None: see inpaint_method_for
    directions_files: Sequence[str | os.PathLike] = ()
    seed: int = 0
    render: Rendering | str = Rendering.NATIVE
    device: str | torch.device | None = None
    mixed_precision: bool | None = None


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` made. ``photo``: the final photo (uint8, the input's size);
    ``aligned``: the face as cut out; ``inversion``; ``edited``: the rendered edit (uint8
    ``[r, r, 3]``); ``face``: the generator-resolution face after inpainting (``edited`` without a
    mask; the ``generator`` rendering pastes it); ``mask`` / ``edges``: bool and float ``[r, r]``
    in the aligned frame (``None`` without a mask); ``rendering``: how the result was rendered."""

    photo: np.ndarray
    aligned: AlignedFace
    inversion: Inversion
    edited: np.ndarray
    face: np.ndarray
    faces: list[Face] = field(default_factory=list)
    mask: np.ndarray | None = None
    edges: np.ndarray | None = None
    rendering: Rendering = Rendering.NATIVE


# -- steps --------------------------------------------------------------------------------------
def find_faces(photo: np.ndarray, detector: Detector = "hog") -> list[Face]:
    """The faces in ``photo``, largest first; :class:`~inversion.NoFaceError` when there is none.
    Safe to call from several threads at once."""
    return detect_faces(photo, detector=detector)


def align(photo: np.ndarray, faces: Sequence[Face], index: int, G: Generator) -> AlignedFace:
    """Face ``index`` of ``faces`` aligned to ``G``'s resolution and framing."""
    if not faces:
        raise NoFaceError("no face to align; find the faces in the photo first")
    return align_face(photo, pick_face(faces, index, error=PipelineError), G.img_resolution)


def face_tensor(face: np.ndarray) -> torch.Tensor:
    """uint8 ``[r, r, 3]`` -> float ``[1, 3, r, r]`` in [-1, 1]."""
    return uint8_to_float(face)


def invert_face(G: Generator, aligned: AlignedFace, method: str = "w+", steps: int | None = None,
                progress: ProgressFn | None = None, seed: int = 0, device: str | torch.device | None = None,
                mixed_precision: bool | None = None) -> Inversion:
    """Project the aligned face into ``G``'s latent space (see :func:`inversion.invert`; ``device``
    ``None``: ``G``'s; ``mixed_precision`` ``None``: the settings' default). ``steps`` counts the
    steps the method optimises: the latent's for ``w``, ``w+`` and ``pti`` (its pivot), the
    generator tuning of ``encoder+pti``; ``encoder`` takes none."""
    overrides = {} if mixed_precision is None else {"mixed_precision": mixed_precision}
    if method == "encoder+pti" and steps is not None:
        overrides["pti_steps"], steps = steps, None
    return invert(G, face_tensor(aligned.image), method=method, steps=steps, progress=progress, seed=seed,
                  device=device, **overrides)


def load_inversion(source: Inversion | str | os.PathLike, G: Generator) -> Inversion:
    """An :class:`~inversion.Inversion` or its ``.npz``, checked to belong to ``G``."""
    if isinstance(source, Inversion):
        source.check_generator(G)
        return source
    return Inversion.load(source, G)


def directions_for(G: Generator, files: Sequence[str | os.PathLike] = ()) -> dict[str, Direction]:
    """The directions to offer for ``G``: the shipped ones plus ``files``; when that is empty,
    :data:`FALLBACK_SEFA` SeFa directions computed now (named ``sefa0``, ...)."""
    found = available_directions(G, files)
    if found:
        return found
    return {d.name: d for d in sefa(G, FALLBACK_SEFA)}


def render_edit(inversion: Inversion, G: Generator, edits: Sequence[Edit | str] = (),
                layers: LayerRange | None = None, directions: Mapping[str, Direction] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction and the edit (``edits`` applied, their moves adding up; no edits: the
    reconstruction again), both float ``[1, 3, r, r]`` in [-1, 1]."""
    reconstruction = inversion.render(G)
    plan = [parse_edit(e) if isinstance(e, str) else e for e in edits]
    if not plan:
        return reconstruction, reconstruction
    result = edit(inversion, G, plan, layers=layers, directions=directions if directions is not None
                  else directions_for(G))
    return reconstruction, result.image


def edit_face(inversion: Inversion, G: Generator, edits: Sequence[Edit | str] = (), layers: LayerRange | None = None,
              directions: Mapping[str, Direction] | None = None) -> np.ndarray:
    """Render the inversion with ``edits`` applied (their moves add up); no edits: the
    reconstruction. Returns uint8 ``[r, r, 3]``."""
    return to_uint8(render_edit(inversion, G, edits, layers, directions)[1])[0]


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """A mask image file (any mode, **white = regenerate**) -> bool ``[H, W]``."""
    return read_mask(path)[0, 0].numpy() > 0.5


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    a = np.asarray(mask)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[..., 0] if a.shape[2] < 4 else a[..., 3]  # RGBA: the painted (opaque) pixels
    if a.ndim != 2:
        raise PipelineError(f"a mask must be one channel [H, W] (True/white = regenerate), got shape {a.shape}")
    if a.dtype == np.bool_:
        return a
    return a >= (128 if a.dtype == np.uint8 else 0.5)


def mask_for_face(mask: np.ndarray | str | os.PathLike, photo_shape: tuple[int, ...], aligned: AlignedFace
                  ) -> np.ndarray:
    """The mask in the aligned frame (bool ``[r, r]``). ``mask``: bool/0-1/uint8 (>= 128) ``[H, W]``
    of the photo's size (warped into the aligned frame) or of the aligned face's size, or such a
    mask file (white = regenerate). Any other size raises :class:`PipelineError`."""
    m = read_mask_file(mask) if isinstance(mask, (str, os.PathLike)) else _as_bool_mask(mask)
    h, w = photo_shape[:2]
    r = aligned.res
    if m.shape == (h, w):
        # aligned px -> photo px is exactly the inverse map warpAffine wants.
        warped = cv2.warpAffine(m.astype(np.float32), aligned.to_photo[:2], (r, r),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        return warped >= 0.5
    if m.shape == (r, r):
        return m
    raise PipelineError(f"the mask is {m.shape[1]}x{m.shape[0]} px; use the photo's size ({w}x{h}) or the aligned "
                        f"face's size ({r}x{r})")


def _mask_array(mask: np.ndarray | str | os.PathLike) -> np.ndarray:
    return read_mask_file(mask) if isinstance(mask, (str, os.PathLike)) else _as_bool_mask(mask)


def _check_coverage(touched: bool, fraction: float) -> None:
    if not touched:
        raise PipelineError(EMPTY_MASK_MESSAGE)
    if fraction > MAX_MASK_COVERAGE:
        raise PipelineError(f"the mask covers {fraction:.0%} of the face; paint only the region to regenerate "
                            f"(at most {MAX_MASK_COVERAGE:.0%} of the face)")


def check_mask_alone(mask: np.ndarray | str | os.PathLike) -> np.ndarray:
    """The checks a mask allows before any face is found: refuse (:class:`PipelineError`) an
    empty mask and one that is white everywhere. Returns the mask as bool ``[H, W]``."""
    m = _mask_array(mask)
    _check_coverage(bool(m.any()), 1.0 if m.all() else 0.0)
    return m


def check_face_mask(mask: np.ndarray | str | os.PathLike, photo_shape: tuple[int, ...], aligned: AlignedFace
                    ) -> None:
    """Refuse (:class:`PipelineError`, one line saying what to do) a mask that means nothing for
    this face: one that marks nothing inside the face's square (nothing would be regenerated), or
    that covers more than :data:`MAX_MASK_COVERAGE` of it (the inpainter would paste a blank
    square). ``mask`` as :func:`mask_for_face` takes it. Every step that regenerates a region
    (:func:`run_pipeline`, :func:`render_native`, :func:`inpaint_face`, :func:`face_edges`) runs it."""
    m = _mask_array(mask)
    h, w = photo_shape[:2]
    r = aligned.res
    if m.shape == (h, w):
        # The share of the face's square (the part inside the photo) that the mask covers.
        def to_face(a: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(a.astype(np.float32), aligned.to_photo[:2], (r, r),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)

        inside = float(to_face(np.ones((h, w), np.float32)).sum())
        fraction = float(to_face(m).sum()) / inside if inside > 0 else 0.0
        # Photo px: a stroke thinner than an aligned pixel still regenerates at the photo's resolution.
        _check_coverage(bool(photo_mask(m, photo_shape, aligned).any()), fraction)
    else:
        m = mask_for_face(m, photo_shape, aligned)  # the aligned size, or a PipelineError naming both sizes
        _check_coverage(bool(m.any()), float(m.mean()))


def check_aligned_mask(m: np.ndarray) -> None:
    """:func:`check_face_mask` for a bool mask ``[r, r]`` already in the aligned frame."""
    _check_coverage(bool(m.any()), float(m.mean()))


def face_edges(face: np.ndarray, mask: np.ndarray, device: str | torch.device | None = None) -> np.ndarray:
    """EdgeConnect's edge map for ``face`` (uint8 ``[r, r, 3]``) with ``mask`` (bool ``[r, r]``):
    Canny outside the mask, predicted inside. float32 ``[r, r]`` in [0, 1]. A mask that marks
    nothing, or nearly the whole face, is refused (:func:`check_face_mask`). G1 runs on ``device``
    (``None``: the CPU)."""
    b = _as_bool_mask(mask)
    check_aligned_mask(b)
    m = torch.from_numpy(b.astype(np.float32))[None, None]
    return predict_edges(face_tensor(face), m, device=device)[0, 0].numpy()


def inpaint_method_for(method: str | None, edges: np.ndarray | None) -> str:
    """``method``, or when none is named: EdgeConnect for drawn ``edges`` (the only method that
    uses them), else :func:`inpainting.default_method`."""
    if method is not None:
        return method
    return InpaintMethod.EDGECONNECT.value if edges is not None else default_inpaint_method().value


def inpaint_face(face: np.ndarray, mask: np.ndarray, edges: np.ndarray | None = None,
                 method: str | None = None, device: str | torch.device | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Regenerate the masked region of ``face`` (uint8 ``[r, r, 3]``; ``mask`` bool ``[r, r]``,
    True = regenerate) with ``method`` (``None``: :func:`inpaint_method_for`). ``edges``
    (EdgeConnect only, float ``[r, r]`` in [0, 1]) replace the
    predicted edges inside the mask. Returns the new face (uint8; pixels outside the mask
    unchanged) and the edge map used (``None`` for the classical methods). A mask that marks
    nothing, or nearly the whole face, is refused (:func:`check_face_mask`). EdgeConnect and GLCIC run on
    ``device`` (``None``: the CPU)."""
    m = _as_bool_mask(mask)
    if m.shape != face.shape[:2]:
        raise PipelineError(f"the mask is {m.shape[1]}x{m.shape[0]} px but the face is {face.shape[1]}x"
                            f"{face.shape[0]}; draw the mask on the face")
    check_aligned_mask(m)
    return _inpaint_face(face, m, edges, inpaint_method_for(method, edges), device)


def _inpaint_face(face: np.ndarray, m: np.ndarray, edges: np.ndarray | None, method: str,
                  device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`inpaint_face` without the coverage check: :func:`render_native` checks the user's
    mask once, then inpaints a shrunk copy whose hole is dilated (every low pixel touching it)."""
    if not m.any():
        return face.copy(), None
    e = None
    if edges is not None:
        e = np.asarray(edges, dtype=np.float32)
        if e.shape != m.shape:
            raise PipelineError(f"the edge map is {e.shape[1]}x{e.shape[0]} px but the face is {m.shape[1]}x"
                                f"{m.shape[0]}; predict the edges again")
        e = torch.from_numpy(np.clip(e, 0, 1))[None, None]
    mask_t = torch.from_numpy(m.astype(np.float32))[None, None]
    learned = method in (InpaintMethod.EDGECONNECT, *GLCIC_METHODS)  # the classical ones run on the CPU
    result = inpaint(face_tensor(face), mask_t, e, method=method, device=device if learned else None)
    out = to_uint8(result.image)[0]
    out[~m] = face[~m]  # exactly the input outside the hole, whatever the float round trip did
    return out, None if result.edges is None else result.edges[0, 0].numpy()


def paste(photo: np.ndarray, aligned: AlignedFace, face: np.ndarray, feather: float = 0.1) -> np.ndarray:
    """``face`` pasted back where ``aligned`` was cut out (pixels outside the square unchanged)."""
    return paste_back(photo, aligned, face, feather=feather)


def photo_mask(mask: np.ndarray | str | os.PathLike, photo_shape: tuple[int, ...], aligned: AlignedFace
               ) -> np.ndarray:
    """The regenerated region in photo px (bool ``[H, W]``): a photo-sized mask as given, clipped
    to the aligned square (the only part the pipeline regenerates); an aligned-sized one warped
    out to the photo. Other sizes raise :class:`PipelineError`."""
    m = _mask_array(mask)
    h, w = photo_shape[:2]
    photo_sized = m.shape == (h, w)
    square = np.ones((aligned.res, aligned.res), np.float32) if photo_sized else \
        mask_for_face(m, photo_shape, aligned).astype(np.float32)
    # aligned px -> photo px is to_photo (linear: a cubic kernel would ring past the mask's edge).
    inside = cv2.warpAffine(square, aligned.to_photo[:2], (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT) >= 0.5
    return inside & m if photo_sized else inside


@dataclass
class NativeRender:
    """What :func:`render_native` made: ``photo`` (uint8, the input's size); ``face``: the
    region inpainted at the generator's resolution (uint8 ``[r, r, 3]``, ``None`` without a mask);
    ``edges``: the edge map EdgeConnect used there (float ``[r, r]``, else ``None``)."""

    photo: np.ndarray
    face: np.ndarray | None = None
    edges: np.ndarray | None = None


def render_native(photo: np.ndarray, aligned: AlignedFace, reconstruction: torch.Tensor, edited: torch.Tensor,
                  mask: np.ndarray | str | os.PathLike | None = None, edges: np.ndarray | None = None,
                  inpaint_method: str | None = None,
                  rendering: Rendering | str = Rendering.NATIVE, feather: float = 0.1,
                  device: str | torch.device | None = None) -> NativeRender:
    """The result at the photo's own resolution.

    The change from ``reconstruction`` to ``edited`` (renders, float ``[1, 3, r, r]``) is carried to
    the photo's pixels (:func:`~manipulate.transfer.transfer_edit`). With a ``mask`` (as
    :func:`mask_for_face` takes it), that region of the edited photo is then regenerated: the
    face's native crop is shrunk to ``r``, inpainted there (``inpaint_method``, ``edges`` as in
    :func:`inpaint_face`) and scaled back up with the photo's own fine detail added
    (:func:`~inpainting.residual_aggregation.inpaint_native`). Pixels that neither the edit nor
    the mask touch are bit-identical to ``photo``. A mask that marks nothing on the face, or
    nearly all of it, is refused before any work (:func:`check_face_mask`). EdgeConnect and GLCIC run on
    ``device`` (``None``: the CPU); the flow, warps and compositing on the CPU (OpenCV).
    """
    if mask is not None:
        mask = _mask_array(mask)
        check_face_mask(mask, photo.shape, aligned)
    out = transfer_edit(photo, aligned, reconstruction, edited, rendering, feather=feather)
    if mask is None:
        return NativeRender(out)
    region = photo_mask(mask, photo.shape, aligned)  # not empty: check_face_mask saw to that
    native = align_native(out, aligned)
    n = native.res
    # The photo-px region in the native frame (native px -> photo px is native.to_photo).
    hole = cv2.warpAffine(region.astype(np.float32), native.to_photo[:2], (n, n),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT) > 0
    low: dict[str, np.ndarray | None] = {}

    def inpaint_low(image: np.ndarray, low_mask: np.ndarray) -> np.ndarray:
        user_edges = edges if edges is not None and np.shape(edges) == low_mask.shape else None
        low["face"], low["edges"] = _inpaint_face(image, low_mask, user_edges,
                                                  inpaint_method_for(inpaint_method, user_edges), device)
        return low["face"]

    filled = inpaint_native(native.image, hole, inpaint_low, low_size=aligned.res)
    return NativeRender(paste_inside(out, native, filled, region), low.get("face"), low.get("edges"))


# -- the whole pipeline ------------------------------------------------------------------------------
def check_options(options: PipelineOptions) -> tuple[Edit, ...]:
    """Refuse (one-line :class:`ValueError`) options that need no photo to be found wrong: bad or
    out-of-range edit strengths, inversion steps or seed, feather, face index, rendering, methods,
    a device that is not here (``cuda`` without a GPU).
    Returns the edits parsed. :func:`run_pipeline` calls it first, so a refusal costs no time."""
    plan = tuple(parse_edit(e) if isinstance(e, str) else e for e in options.edits)
    if isinstance(options.layers, str):
        parse_layers(options.layers)
    if options.inversion is None:
        from inversion.project import METHODS

        if options.method not in (*METHODS, AUTO_METHOD):
            raise PipelineError(f"unknown inversion method {options.method!r}; choose one of {', '.join(METHODS)} "
                                f"or {AUTO_METHOD}")
        overrides = {} if options.mixed_precision is None else {"mixed_precision": options.mixed_precision}
        projection_settings(options.steps, seed=options.seed, **overrides)
    check_feather(options.feather)
    if isinstance(options.face, bool) or not isinstance(options.face, (int, np.integer)) or options.face < 0:
        raise PipelineError(f"face must be 0 or more (0 = the largest face), got {options.face!r}")
    Rendering(options.render)
    if options.inpaint_method is not None:
        InpaintMethod(options.inpaint_method)
    if options.device is not None:
        resolve_device(options.device)
    return plan


def run_pipeline(photo: np.ndarray, options: PipelineOptions = PipelineOptions(), G: Generator | None = None,
                 progress: ProgressFn | None = None, directions: Mapping[str, Direction] | None = None
                 ) -> PipelineResult:
    """Run every step on ``photo`` (uint8 ``[H, W, 3]`` RGB, e.g. from :func:`inversion.load_photo`).
    ``G`` defaults to the shipped generator; ``progress`` sees every inversion step; ``directions``
    defaults to :func:`directions_for` ``G`` and ``options.directions_files``. The models run on
    ``options.device`` (a copy of ``G`` when it is elsewhere); the result is on the CPU.

    Options are checked before any work (:func:`check_options`), the mask right after the face is
    aligned and before the inversion (:func:`check_face_mask`: an empty mask, or one covering
    nearly the whole face, is refused)."""
    plan = check_options(options)
    mask_array = check_mask_alone(options.mask) if options.mask is not None else None
    G = on_device(G, options.device) if G is not None else \
        load_generator("default", device=resolve_device(options.device))
    device = module_device(G)
    faces = find_faces(photo, options.detector)
    aligned = align(photo, faces, options.face, G)
    mask = None
    if mask_array is not None:
        check_face_mask(mask_array, photo.shape, aligned)
        mask = mask_for_face(mask_array, photo.shape, aligned)
        if Rendering(options.render) is Rendering.GENERATOR:
            check_aligned_mask(mask)  # regenerated at the generator's resolution: a thin stroke may vanish
    layers = parse_layers(options.layers) if isinstance(options.layers, str) else options.layers
    if options.inversion is not None:
        inv = load_inversion(options.inversion, G)
    else:
        from inversion.project import default_method

        method = default_method(G) if options.method == AUTO_METHOD else options.method
        inv = invert_face(G, aligned, method, options.steps, progress, options.seed,
                          mixed_precision=options.mixed_precision)
    if directions is None and plan:
        directions = directions_for(G, options.directions_files)
    reconstruction, edited_render = render_edit(inv, G, plan, layers, directions)
    edited = to_uint8(edited_render)[0]
    rendering = Rendering(options.render)
    if rendering is Rendering.GENERATOR:
        face, edges = edited, None
        if mask is not None:
            face, edges = inpaint_face(edited, mask, options.edges, options.inpaint_method, device)
        result = paste(photo, aligned, face, options.feather)
    else:
        native = render_native(photo, aligned, reconstruction, edited_render, mask_array, options.edges,
                               options.inpaint_method, rendering, options.feather, device)
        result, edges = native.photo, native.edges
        face = native.face if native.face is not None else edited
    return PipelineResult(photo=result, aligned=aligned, inversion=inv, edited=edited, face=face, faces=faces,
                          mask=mask, edges=edges, rendering=rendering)


# -- CLI ------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ganbrush pipeline`` to the ``ganbrush`` command."""
    from inversion.cli import add_mixed_precision_argument
    from inversion.project import METHODS

    p = subparsers.add_parser(
        "pipeline", help="edit a face in a photo: find, invert, edit, inpaint, paste back",
        description="Find the faces in PHOTO, invert one (or read --inversion), apply the --edit moves, regenerate "
                    "the --mask region (EdgeConnect by default) and write the photo with the edited face to --out.")
    p.add_argument("photo", help="photo file (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="output image file (.png, .jpg, ...)")
    p.add_argument("--edit", action="append", default=[], metavar="NAME=STRENGTH[@FIRST-LAST]",
                   help="an edit, e.g. smile=2 or age=-1@0-5 (repeatable; the moves add up)")
    p.add_argument("--layers", default=None, metavar="FIRST-LAST", help="apply every edit to these ws layers")
    p.add_argument("--directions", action="append", default=[], metavar="FILE.npz",
                   help="extra directions file (from `ganbrush directions`; repeatable)")
    p.add_argument("--mask", default=None, help="mask image, white = regenerate (photo size or aligned face size)")
    p.add_argument("--inpaint-method", default=None,  # methods with shipped weights
                   choices=[m.value for m in ready_inpaint_methods()],
                   help=f"how a --mask region is filled at 64 px (default {default_inpaint_method().value}: the "
                        "best measured method this installation has)")
    p.add_argument("--face", type=int, default=0, help="which face, 0 = the largest")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--method", default=AUTO_METHOD, choices=(*METHODS, AUTO_METHOD),
                   help="inversion method (default auto: encoder+pti where the encoder fits the generator, else w+)")
    p.add_argument("--steps", type=int, default=None, help="inversion steps (default per method)")
    p.add_argument("--inversion", default=None, metavar="FILE.npz", help="use this inversion instead of inverting")
    p.add_argument("--save-inversion", default=None, metavar="FILE.npz", help="also write the inversion here")
    p.add_argument("--feather", type=float, default=0.1, help="paste-back blend width, fraction of the face side")
    p.add_argument("--render", default=Rendering.NATIVE.value, choices=[r.value for r in Rendering],
                   help="native: the photo keeps its own pixels and resolution, the generator supplies the change "
                        "(default); generator: paste the generator's render scaled up (for comparison)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_mixed_precision_argument(p)
    add_device_argument(p)
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm.auto import tqdm

    from inversion import load_photo, save_photo

    # Outputs and every number are checked before anything is read or computed; nothing is created.
    targets = [check_output(args.out, args.force, image_suffixes(), "--out", IMAGE_SUFFIX_HINT)]
    if args.save_inversion:
        targets.append(check_output(args.save_inversion, args.force, {".npz"}, "--save-inversion"))
    edits = [parse_edit(text) for text in args.edit]
    options = PipelineOptions(edits=tuple(edits), layers=parse_layers(args.layers) if args.layers else None,
                              mask=None, face=args.face, detector=args.detector, method=args.method,
                              steps=args.steps, inversion=args.inversion, feather=args.feather,
                              inpaint_method=args.inpaint_method, directions_files=tuple(args.directions),
                              seed=args.seed, render=args.render, device=args.device,
                              mixed_precision=args.mixed_precision)
    check_options(options)
    photo = load_photo(args.photo)
    if args.mask:
        options = dataclasses.replace(options, mask=check_mask_alone(args.mask))  # read once, checked at once
    G = load_generator(args.generator, device=args.device)
    with tqdm(desc=f"invert ({args.method})", unit="step", disable=args.inversion is not None) as bar:
        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            bar.total = total
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            bar.update(1)

        result = run_pipeline(photo, options, G, progress)
    with write_all(targets, args.force) as tmp:  # every output or none
        save_photo(result.photo, tmp[0], force=True)
        if args.save_inversion:
            result.inversion.save(tmp[1], force=True)
    left, top, right, bottom = result.aligned.face.box
    print(f"face {args.face} of {len(result.faces)} at ({left:.0f}, {top:.0f}, {right:.0f}, {bottom:.0f}); "
          f"{len(edits)} edit(s){', mask regenerated' if result.mask is not None else ''}; wrote {args.out}")
    return 0

