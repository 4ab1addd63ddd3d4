"""The ganbrush web app: ``python app.py`` serves it on http://127.0.0.1:7860, fully offline.

Upload a photo -> pick one of the faces found -> invert it (live progress; or upload a saved
``.npz``) -> move the direction sliders -> paint a region to regenerate with EdgeConnect, look at
and redraw its predicted edges -> download the photo with the edited face, rendered at the
photo's own resolution (the generator supplies only the change; a "generator" switch shows the
generator's render pasted instead, for comparison). Every step calls
:mod:`ganbrush_pipeline`. Beside the latent edits, the face's semantic label map can be painted
(a fixed palette, presets such as "widen mouth") and SPADE redraws the changed part of the photo
(:mod:`ganbrush_semantic`). Each browser session keeps its own state (``gr.State``), requests are
queued, and a user error is shown as a one-line message while the app keeps serving.

Named API endpoints (for ``gradio_client``): ``/pipeline`` (everything in one call, files in),
and the steps ``/find_faces``, ``/invert``, ``/load_inversion``, ``/edit``, ``/predict_edges``,
``/regenerate``, ``/labels``, ``/synthesize`` that share the session state; ``/retarget`` (any
photo, files in: InGAN trained on it redraws it at other sizes, :mod:`manipulate.retarget`).

Hostile and careless inputs: photos arrive as files and are read by :func:`inversion.load_photo`
(bit depth, transparency, EXIF, the size limit from the header), never by Gradio's converter. An
inversion stops within a step when its request is cancelled (``job.cancel()``, the Stop button) or
its browser session closes, and writes nothing. The server listens where ``--host``/``--port`` say
(default: Gradio's ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``, else 127.0.0.1:7860); everything
it writes (results, Gradio's copies of uploads) lives in one ``ganbrush-app-*`` folder (under
``GRADIO_TEMP_DIR`` if set), results expire after ``--keep-results`` seconds, and the folder is
removed on exit (Ctrl-C or SIGTERM). The models run on ``--device`` (default ``$GANBRUSH_DEVICE``,
else CUDA when available, else the CPU); a GPU that is not there is one line and exit status 2.
"""

from __future__ import annotations

import os

# Before gradio is imported: no analytics, no version check, no telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import atexit  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import ganbrush_pipeline as pipe  # noqa: E402
import ganbrush_semantic as sem  # noqa: E402
from ganbrush_core.cancel import Cancelled, CancelToken  # noqa: E402
from ganbrush_core.checks import check_int  # noqa: E402
from ganbrush_core.devices import DeviceError, add_device_argument, module_device, resolve_device  # noqa: E402
from ganbrush_core.images import to_uint8, uint8_to_float  # noqa: E402
from inpainting import Method as InpaintMethod  # noqa: E402
from inpainting import default_method as default_inpaint_method  # noqa: E402
from inpainting import ready_methods as ready_inpaint_methods  # noqa: E402
from inversion import METHODS, AlignedFace, Face, Inversion, PhotoError, align_face, load_photo  # noqa: E402
from inversion.align import pick_face  # noqa: E402
from inversion.project import default_method  # noqa: E402
from manipulate import Direction, Edit, parse_edit, parse_layers  # noqa: E402
from manipulate import labels as L  # noqa: E402
from manipulate.retarget import DEFAULT_STEPS as RETARGET_STEPS  # noqa: E402
from manipulate.transfer import Rendering  # noqa: E402
from stylegan_ops import load_generator  # noqa: E402
from stylegan_ops.networks import Generator  # noqa: E402

#: Photos larger than this are refused (checked from the file header, before decoding).
MAX_PIXELS = 40_000_000
#: Uploads larger than this are refused by the server before they reach the app.
MAX_FILE_SIZE = "25mb"
#: The brush and edge editors show the (small) aligned face enlarged to this side, so it can be painted on.
EDITOR_SIDE = 256
#: Face thumbnails in the gallery.
THUMB_SIDE = 128
#: The photo shown right after an upload is scaled down to this side (the full photo is read anyway).
PREVIEW_SIDE = 768
DEFAULT_STEPS = 200
#: Gradio's copies of served files, and the app's own results, are deleted after this long (default).
CACHE_SECONDS = 3600
MAX_STEPS = 2000
#: Slider range of each direction, in the direction's own units (~1 std of sampled w).
MAX_STRENGTH = 5.0
#: After a cancel, how long the request waits for its worker thread to stop (it stops within a step).
STOP_WAIT_SECONDS = 30
#: The label-map step's optional style seed (empty: the face's own style) is a whole number up to this.
MAX_STYLE_SEED = 2**31 - 1
#: Most InGAN training steps the /retarget step accepts (default: manipulate.retarget's).
MAX_RETARGET_STEPS = 5000

T = TypeVar("T")


#: Gradio spots a progress parameter by this default value and feeds it the running event's tracker.
PROGRESS = gr.Progress()


class AppInputError(ValueError):
    """A step run before the one it needs (no photo yet, no inversion yet, ...)."""


@dataclasses.dataclass
class Session:
    """The work on one photo. Never mutated: a handler builds a new one, so a request that is
    still running keeps the data it started with."""

    photo: np.ndarray | None = None
    faces: list[Face] = dataclasses.field(default_factory=list)
    aligned: AlignedFace | None = None
    inversion: Inversion | None = None
    edited: np.ndarray | None = None  # the rendered edit, uint8 [r, r, 3]
    reconstruction: torch.Tensor | None = None  # the inversion's render, float [1, 3, r, r] in [-1, 1]
    edited_render: torch.Tensor | None = None  # the edit's render, float [1, 3, r, r] in [-1, 1]
    mask: np.ndarray | None = None  # bool [r, r] the edges were predicted for
    edges: np.ndarray | None = None  # float [r, r]
    labels: np.ndarray | None = None  # the label-map step's predicted map, uint8 [s, s] class indices
    label_face: int = 0  # the face that map belongs to


@dataclasses.dataclass
class Workspace:
    """One browser session's state (``gr.State``): its current :class:`Session`. A new upload
    replaces it; a request that finishes for a photo that has since been replaced does not
    write its results into the new photo's session."""

    current: Session = dataclasses.field(default_factory=Session)

    def commit(self, base: Session, new: Session) -> bool:
        """Make ``new`` (derived from ``base``) current, unless another photo was loaded meanwhile."""
        if self.current.photo is not base.photo:
            return False
        self.current = new
        return True


def _new_workspace() -> Workspace:
    return Workspace()


def _one_line(e: Exception) -> gr.Error:
    lines = str(e).strip().splitlines()
    return gr.Error(lines[0] if lines else type(e).__name__, print_exception=False)


def _user_errors(fn: Callable) -> Callable:
    """Show the one-line message of a user error (any ValueError: PhotoError, NoFaceError, MaskError,
    InversionFileError, UnknownDirectionError, ...) or of a cancelled request in the UI instead of a
    traceback. ``fn`` may be an async generator (Gradio shows each value it yields), a coroutine
    function (Gradio awaits it) or a plain one."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for value in fn(*args, **kwargs):
                    yield value
            except (ValueError, Cancelled) as e:
                raise _one_line(e) from None

        return async_gen_wrapper

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (ValueError, Cancelled) as e:
                raise _one_line(e) from None

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, Cancelled) as e:
            raise _one_line(e) from None

    return wrapper


def _read_photo(path: str) -> np.ndarray:
    """The uploaded file, read by :func:`load_photo` (never by Gradio's image converter, which clips
    16-bit photos, drops transparency and decodes bombs before any size check)."""
    try:
        return load_photo(path, max_pixels=MAX_PIXELS)
    except PhotoError as e:
        # Name the file as the user knows it, not by its copy in the server's upload folder.
        raise PhotoError(str(e).replace(str(Path(path).parent) + os.sep, "")) from None


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` scaled down (never up) so that its longer side is at most ``side``."""
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def expire(folder: Path, max_age: float) -> None:
    """Delete the entries of ``folder`` last modified more than ``max_age`` seconds ago."""
    now = time.time()
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        try:
            old = now - entry.lstat().st_mtime > max_age
        except FileNotFoundError:  # removed meanwhile by a concurrent request
            continue
        if old:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _enlarge(image: np.ndarray, side: int, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
    return cv2.resize(image, (side, side), interpolation=interpolation)


def _shrink_to(plane: np.ndarray, side: int) -> np.ndarray:
    """float plane of any size -> float32 ``[side, side]`` by area averaging."""
    return cv2.resize(plane.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)


def _painted(editor_value: dict | None) -> np.ndarray | None:
    """The union of the painted strokes of an ImageEditor value: float ``[H, W]`` in [0, 1]."""
    if not editor_value or not editor_value.get("layers"):
        return None
    planes = [np.asarray(layer)[..., 3].astype(np.float32) / 255 for layer in editor_value["layers"]
              if layer is not None and np.asarray(layer).ndim == 3 and np.asarray(layer).shape[2] == 4]
    return np.max(planes, axis=0) if planes else None


def _edges_image(edges: np.ndarray) -> np.ndarray:
    gray = np.clip(np.round(edges * 255), 0, 255).astype(np.uint8)
    return _enlarge(np.repeat(gray[..., None], 3, axis=2), EDITOR_SIDE)


def _picked_face(evt: gr.SelectData) -> int:
    return int(evt.index)


# -- the label-map step ---------------------------------------------------------------------------------
#: One-click edits of a label map, applied to what the editor shows.
LABEL_PRESETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: L.PRESETS[name] for name in ("widen mouth", "narrow mouth", "bigger eyes", "remove brows")}


def _hex(rgb: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def _palette_legend() -> str:
    """HTML: a swatch and the name of each class, in the brush's colour order."""
    items = "".join(f'<div><span style="display:inline-block;width:14px;height:14px;margin-right:6px;'
                    f'vertical-align:middle;border:1px solid #888;background:{_hex(c)}"></span>'
                    f'{name.replace("_", " ")}</div>' for name, c in zip(L.CLASSES, L.PALETTE))
    return f'<div id="label-legend">{items}</div>'


def _style_seed(seed: str | float | None) -> int | None:
    """The style seed typed (text) or sent (a number); ``None`` for an empty field."""
    text = "" if seed is None else str(seed).strip()
    if not text:
        return None
    value: object = text
    for parse in (int, float):  # "3", "3.0" and 3 alike; check_int refuses fractions, nan and inf
        try:
            value = parse(text)
            break
        except ValueError:
            pass
    return check_int("the style seed", value, 0, MAX_STYLE_SEED)


def _label_editor(labels: np.ndarray) -> dict:
    """An ImageEditor value showing ``labels`` colour-coded, with nothing painted on it yet."""
    return {"background": L.colorize(labels), "layers": [], "composite": None}


def _editor_picture(value: dict | None) -> np.ndarray | None:
    """What an ImageEditor value (RGBA images) shows, uint8 ``[H, W, 3]``: its composite, or (from
    a client that sends none) its layers, alpha-blended over its background (Gradio leaves the
    colour of transparent pixels arbitrary)."""
    if not value or value.get("background") is None:
        return None
    background = np.asarray(value["background"])
    if background.ndim == 2:
        background = np.repeat(background[..., None], 3, axis=2)
    out = background[..., :3].astype(np.float32)
    overlays = [value["composite"]] if value.get("composite") is not None else value.get("layers") or []
    for layer in overlays:
        if layer is None:
            continue
        a = np.asarray(layer)
        if a.shape[:2] != out.shape[:2]:
            raise AppInputError(f"a painted layer is {a.shape[1]}x{a.shape[0]} px, the map "
                                f"{out.shape[1]}x{out.shape[0]}: paint on the map the app shows")
        if a.ndim == 2 or a.shape[2] == 3:  # opaque
            out = np.repeat(a[..., None], 3, axis=2).astype(np.float32) if a.ndim == 2 else a.astype(np.float32)
            continue
        alpha = a[..., 3:].astype(np.float32) / 255
        out = out * (1 - alpha) + a[..., :3] * alpha
    return np.round(out).astype(np.uint8)


class App:
    """The handlers, bound to one generator and its directions."""

    def __init__(self, G: Generator, directions: dict[str, Direction], work_dir: Path,
                 keep_seconds: float = CACHE_SECONDS) -> None:
        self.G = G
        self.device = module_device(G)  # EdgeConnect and LPIPS run beside the generator
        self.default_method = default_method(G)
        self.directions = directions
        self.names = list(directions)
        self.work_dir = work_dir
        self.results = work_dir / "results"
        self.keep_seconds = keep_seconds
        self._last_expiry = 0.0
        # The cancel tokens of the long requests now running, by browser session (None: no session).
        self._running: dict[str | None, set[CancelToken]] = {}
        self._lock = threading.Lock()

    def _file(self, suffix: str) -> Path:
        # Old results go as new ones are made: a server that runs for weeks keeps about
        # keep_seconds' worth of them (Gradio's delete_cache does the same for its own files).
        now = time.time()
        if now - self._last_expiry > min(60.0, self.keep_seconds / 2):
            self._last_expiry = now
            expire(self.results, self.keep_seconds)
        folder = self.results / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder / f"ganbrush{suffix}"

    # -- cancellation ----------------------------------------------------------------------------
    def cancel_session(self, session: str | None, reason: str) -> None:
        """Stop the long requests of ``session`` (all sessions for ``None``) at their next step."""
        with self._lock:
            tokens = [t for key, ts in self._running.items() if session is None or key == session for t in ts]
        for token in tokens:
            token.cancel(reason)

    def _session_closed(self, request: gr.Request) -> None:
        """Gradio's unload event: the browser tab (or gradio_client) of this session went away."""
        self.cancel_session(request.session_hash, "the browser session was closed")

    async def _cancellable(self, request: gr.Request | None, work: Callable[[CancelToken], T]) -> T:
        """Run ``work(token)`` in a worker thread; stop it (``token`` cancelled, so its progress
        callback raises :class:`Cancelled`) when Gradio cancels this request or its session closes.

        Gradio cancels a request by cancelling its asyncio task; the thread of a plain (sync)
        handler would run on to the end, holding a core and writing its outputs."""
        token = CancelToken()
        session = request.session_hash if request is not None else None
        with self._lock:
            self._running.setdefault(session, set()).add(token)
        # to_thread copies the context, where gr.Progress finds its event.
        worker = asyncio.ensure_future(asyncio.to_thread(work, token))
        worker.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even if abandoned
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            token.cancel("the request was cancelled")
            # The concurrency slot stays taken until the thread has really stopped.
            await asyncio.wait({worker}, timeout=STOP_WAIT_SECONDS)
            raise
        finally:
            with self._lock:
                tokens = self._running.get(session, set())
                tokens.discard(token)
                if not tokens:
                    self._running.pop(session, None)

    def _save_png(self, image: np.ndarray, stem: str) -> str:
        path = self._file(".png").with_name(f"{stem}.png")
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return str(path)

    @staticmethod
    def _need(workspace: Workspace, what: str) -> Session:
        session = workspace.current
        if session.photo is None:
            raise AppInputError("upload a photo and press 'Find faces' first")
        if what == "inversion" and session.inversion is None:
            raise AppInputError("invert the face (or upload its inversion .npz) first")
        if what == "labels" and session.labels is None:
            raise AppInputError("press 'Label map' to show the face's label map first")
        return session

    def _edits(self, strengths: tuple[float, ...]) -> list[Edit]:
        return [Edit(name, float(s)) for name, s in zip(self.names, strengths) if s]

    @staticmethod
    def _layers(restrict: bool, first: float, last: float) -> tuple[int, int] | None:
        if not restrict:
            return None
        if int(first) > int(last):
            raise AppInputError(f"the first layer ({int(first)}) is after the last ({int(last)}); swap them")
        return (int(first), int(last) + 1)

    # -- steps -------------------------------------------------------------------------------
    def preview(self, photo_path: str | None) -> np.ndarray | None:
        """The uploaded photo, scaled down, as soon as it is uploaded (a bad file is refused here already)."""
        return _fit(_read_photo(photo_path), PREVIEW_SIDE) if photo_path else None

    def find_faces(self, workspace: Workspace, photo_path: str | None, detector: str) -> tuple:
        if not photo_path:
            raise AppInputError("upload a photo first")
        photo = _read_photo(photo_path)
        faces = pipe.find_faces(photo, detector)
        thumbs = [(_enlarge(pipe.align(photo, faces, i, self.G).image, THUMB_SIDE, cv2.INTER_CUBIC),
                   f"face {i}") for i in range(len(faces))]
        choices = [(f"face {i}" + (" (largest)" if i == 0 else ""), i) for i in range(len(faces))]
        workspace.current = Session(photo=photo, faces=faces)
        return thumbs, gr.Dropdown(choices=choices, value=0), photo

    async def invert(self, workspace: Workspace, face: int | None, method: str, steps: float,
                     rendering: str = Rendering.NATIVE.value, request: gr.Request | None = None,
                     progress: gr.Progress = PROGRESS) -> AsyncIterator[tuple]:
        """Invert the picked face. ``encoder+pti`` first shows the encoder's one-pass result (in
        well under a second), then refines it by pivotal tuning and shows that (``steps`` tuning
        steps); the other methods show their one result."""
        if method == "encoder+pti":
            yield await self._cancellable(request, functools.partial(
                self._invert, workspace, face, "encoder", steps, rendering, progress))
        yield await self._cancellable(request, functools.partial(
            self._invert, workspace, face, method, steps, rendering, progress))

    def _invert(self, workspace: Workspace, face: int | None, method: str, steps: float, rendering: str,
                progress: gr.Progress, token: CancelToken) -> tuple:
        session = self._need(workspace, "photo")
        aligned = pipe.align(session.photo, session.faces, int(face or 0), self.G)

        def report(step: int, total: int, losses: dict[str, float]) -> None:
            progress((step, total), desc=f"inverting ({method})", unit="steps")

        inv = pipe.invert_face(self.G, aligned, method, int(steps), token.guard(report))
        token.check()  # cancelled during the last step: write nothing
        return self._inverted(workspace, session, aligned, inv, save=True, rendering=rendering)

    def load_inversion(self, workspace: Workspace, face: int | None, npz: str | None,
                       rendering: str = Rendering.NATIVE.value) -> tuple:
        session = self._need(workspace, "photo")
        if not npz:
            raise AppInputError("choose an inversion .npz file to upload")
        aligned = pipe.align(session.photo, session.faces, int(face or 0), self.G)
        return self._inverted(workspace, session, aligned, pipe.load_inversion(npz, self.G), save=False,
                              rendering=rendering)

    def _render(self, session: Session, rendering: str, face: np.ndarray | None = None,
                mask: np.ndarray | None = None, edges: np.ndarray | None = None,
                inpaint_method: str | None = None) -> pipe.NativeRender:
        """The photo with the session's edit (and ``mask`` regenerated), as ``rendering`` says:
        ``generator`` pastes ``face`` (the generator-resolution face), the others render at the
        photo's own resolution."""
        if Rendering(rendering) is Rendering.GENERATOR:
            return pipe.NativeRender(pipe.paste(session.photo, session.aligned, face), face, edges)
        return pipe.render_native(session.photo, session.aligned, session.reconstruction, session.edited_render,
                                  mask, edges, inpaint_method, rendering, device=self.device)

    def _inverted(self, workspace: Workspace, session: Session, aligned: AlignedFace, inv: Inversion,
                  save: bool, rendering: str = Rendering.NATIVE.value) -> tuple:
        reconstruction, _ = pipe.render_edit(inv, self.G)
        recon = to_uint8(reconstruction)[0]
        npz = gr.skip()
        if save:
            npz = str(inv.save(self._file(".npz").with_name("inversion.npz")))
        new = dataclasses.replace(session, aligned=aligned, inversion=inv, edited=recon, mask=None, edges=None,
                                  reconstruction=reconstruction, edited_render=reconstruction)
        shown = [_enlarge(image, EDITOR_SIDE, cv2.INTER_CUBIC) for image in (aligned.image, recon)]
        if not workspace.commit(session, new):
            # Another photo was loaded while this one was being inverted: show (and offer for
            # download) what was made for the old photo, but leave the new photo's work alone.
            gr.Warning("another photo was loaded while inverting: the inversion shown is the old photo's; "
                       "invert again for the new one")
            return (*shown, npz, gr.skip(), gr.skip(), gr.skip(), gr.skip())
        pasted = self._render(new, rendering, recon).photo
        brush = {"background": _enlarge(recon, EDITOR_SIDE), "layers": [], "composite": None}
        return (*shown, npz, brush, None, pasted, self._save_png(pasted, "result"))

    def apply_edits(self, workspace: Workspace, restrict: bool, first: float, last: float,
                    *values: float | str) -> tuple:
        """``values``: one strength per direction slider, then the rendering."""
        *strengths, rendering = values
        session = self._need(workspace, "inversion")
        reconstruction, edited_render = pipe.render_edit(session.inversion, self.G, self._edits(tuple(strengths)),
                                                         self._layers(restrict, first, last), self.directions)
        edited = to_uint8(edited_render)[0]
        new = dataclasses.replace(session, edited=edited, mask=None, edges=None, reconstruction=reconstruction,
                                  edited_render=edited_render)
        pasted = self._render(new, str(rendering), edited).photo
        brush = {"background": _enlarge(edited, EDITOR_SIDE), "layers": [], "composite": None}
        workspace.commit(session, new)
        return brush, None, pasted, self._save_png(pasted, "result")

    def _mask(self, session: Session, brush: dict | None) -> np.ndarray:
        painted = _painted(brush)
        if painted is None or not painted.any():
            raise AppInputError("paint the region to regenerate on the face with the brush first")
        mask = _shrink_to(painted, session.aligned.res) >= 0.5
        pipe.check_aligned_mask(mask)  # before any work: too thin to cover a pixel, or nearly the whole face
        return mask

    def predict_edges(self, workspace: Workspace, brush: dict | None) -> dict:
        session = self._need(workspace, "inversion")
        mask = self._mask(session, brush)
        edges = pipe.face_edges(session.edited, mask, self.device)
        editor = {"background": _edges_image(edges), "layers": [], "composite": None}
        workspace.commit(session, dataclasses.replace(session, mask=mask, edges=edges))
        return editor

    def regenerate(self, workspace: Workspace, brush: dict | None, edges_value: dict | None,
                   method: str, rendering: str = Rendering.NATIVE.value) -> tuple:
        session = self._need(workspace, "inversion")
        mask = self._mask(session, brush)
        edges = None
        # The drawn edges only belong to the mask they were predicted for, and only EdgeConnect draws with them.
        if (InpaintMethod(method) is InpaintMethod.EDGECONNECT and session.edges is not None
                and session.mask is not None and np.array_equal(session.mask, mask)):
            edges = session.edges
            if edges_value and edges_value.get("composite") is not None:
                composite = np.asarray(edges_value["composite"])[..., :3].astype(np.float32).mean(axis=2) / 255
                edges = (_shrink_to(composite, session.aligned.res) >= 0.5).astype(np.float32)
        if Rendering(rendering) is Rendering.GENERATOR:
            face, used = pipe.inpaint_face(session.edited, mask, edges, method, self.device)
            pasted = pipe.paste(session.photo, session.aligned, face)
        else:
            native = self._render(session, rendering, mask=mask, edges=edges, inpaint_method=method)
            pasted, face, used = native.photo, native.face, native.edges
            face = session.edited if face is None else face
        editor = gr.skip() if used is None else {"background": _edges_image(used), "layers": [], "composite": None}
        return _enlarge(face, EDITOR_SIDE), editor, pasted, self._save_png(pasted, "result")

    # -- the label map (SPADE) ---------------------------------------------------------------------
    def label_map(self, workspace: Workspace, face: int | None) -> tuple:
        """The picked face's predicted label map (:data:`ganbrush_semantic.MAP_SIZE` px) in the
        editor, and the face aligned at the same size beside it."""
        session = self._need(workspace, "photo")
        index = int(face or 0)
        pick_face(session.faces, index, "face", AppInputError)
        fl = sem.photo_labels(session.photo, index, sem.MAP_SIZE, faces=session.faces, device=self.device)
        shown = align_face(session.photo, fl.aligned.face, sem.MAP_SIZE).image
        workspace.commit(session, dataclasses.replace(session, labels=fl.labels, label_face=index))
        return _label_editor(fl.labels), shown

    def _painted_labels(self, session: Session, editor: dict | None) -> np.ndarray:
        """The map painted in the editor, uint8 ``[s, s]`` class indices."""
        picture = _editor_picture(editor)
        if picture is None:
            raise AppInputError("press 'Label map' to show the face's label map first")
        side = session.labels.shape[0]
        if picture.shape[:2] != (side, side):
            raise AppInputError(f"the painted map is {picture.shape[1]}x{picture.shape[0]} px; paint on the "
                                f"{side}x{side} map the app shows")
        # The brush offers only the palette: any other colour is the edge of an anti-aliased
        # stroke, and belongs to the nearest class.
        return L.snap_colors(picture, max_distance=np.inf)

    def label_preset(self, name: str, workspace: Workspace, editor: dict | None) -> dict:
        """The editor's map with the preset ``name`` applied (on top of what was painted)."""
        session = self._need(workspace, "labels")
        return _label_editor(LABEL_PRESETS[name](self._painted_labels(session, editor)))

    def reset_label_map(self, workspace: Workspace) -> dict:
        return _label_editor(self._need(workspace, "labels").labels)

    def synthesize(self, workspace: Workspace, editor: dict | None, seed: str | float | None,
                   progress: gr.Progress = PROGRESS) -> tuple:
        """The photo with the face redrawn from the painted map: the result, its PNG, and SPADE's
        renders (own map | edited map | blended) enlarged side by side. ``seed``: empty (the
        face's own style) or a whole number (another style)."""
        session = self._need(workspace, "labels")
        edited = self._painted_labels(session, editor)
        style = _style_seed(seed)
        progress(0, desc="redrawing the changed labels")
        result = sem.synthesize_photo(session.photo, edited, session.label_face, style, faces=session.faces,
                                      device=self.device)
        renders = np.concatenate([_enlarge(image, sem.MAP_SIZE) for image in
                                  (result.reconstruction, result.synthesized, result.render)], axis=1)
        return result.photo, self._save_png(result.photo, "synthesized"), renders

    async def pipeline(self, photo: str | None, edits: str, face: float, method: str, steps: float, layers: str,
                       mask: str | None, inversion: str | None, rendering: str = Rendering.NATIVE.value,
                       request: gr.Request | None = None, progress: gr.Progress = PROGRESS) -> tuple:
        return await self._cancellable(request, functools.partial(
            self._pipeline, photo, edits, face, method, steps, layers, mask, inversion, rendering, progress))

    def _pipeline(self, photo: str | None, edits: str, face: float, method: str, steps: float, layers: str,
                  mask: str | None, inversion: str | None, rendering: str, progress: gr.Progress,
                  token: CancelToken) -> tuple:
        if not photo:
            raise AppInputError("give a photo file")
        image = _read_photo(photo)
        plan = tuple(parse_edit(t) for t in edits.replace(",", " ").split()) if edits else ()

        def report(step: int, total: int, losses: dict[str, float]) -> None:
            progress((step, total), desc=f"inverting ({method})", unit="steps")

        options = pipe.PipelineOptions(edits=plan, layers=parse_layers(layers.strip()) if layers.strip() else None,
                                       mask=pipe.read_mask_file(mask) if mask else None, face=int(face),
                                       method=method, steps=int(steps), inversion=inversion or None,
                                       render=rendering)
        result = pipe.run_pipeline(image, options, self.G, token.guard(report), directions=self.directions)
        token.check()  # cancelled during the last step: write nothing
        npz = result.inversion.save(self._file(".npz").with_name("inversion.npz"))
        return result.photo, self._save_png(result.photo, "result"), str(npz)

    async def retarget(self, photo: str | None, sizes: str, steps: float, method: str = "ingan",
                       request: gr.Request | None = None, progress: gr.Progress = PROGRESS) -> tuple:
        return await self._cancellable(request, functools.partial(self._retarget, photo, sizes, steps, method,
                                                                  progress))

    def _retarget(self, photo: str | None, sizes: str, steps: float, method: str, progress: gr.Progress,
                  token: CancelToken) -> tuple:
        """``photo`` redrawn at each of ``sizes`` ("WxH, WxH", the photo's pixels), side by side, by
        InGAN (the model is cached per photo, so further sizes of it skip the training) or by GPNN
        (no training; each size searched anew)."""
        from manipulate.retarget import Method, check_size, fit, parse_method, parse_sizes, render, render_gpnn, strip

        if not photo:
            raise AppInputError("give a photo file")
        plan = parse_sizes(sizes or "")
        method = parse_method(method)
        steps = check_int("steps", steps, 1, MAX_RETARGET_STEPS)
        image = uint8_to_float(_read_photo(photo))
        H, W = image.shape[-2:]
        plan = [check_size((W, H), s) for s in plan]

        if method is Method.GPNN:
            outs = []
            for k, s in enumerate(plan):
                def rounds(done: int, total: int, k: int = k) -> None:
                    progress((done, total), desc=f"GPNN, size {k + 1} of {len(plan)}", unit="rounds")

                outs.append(render_gpnn(image, s, on_step=token.guard(rounds)))
            token.check()
            result = to_uint8(strip(outs))[0]
            return result, self._save_png(result, "retargeted")

        def report(step: int, total: int) -> None:
            progress((step, total), desc="training InGAN on the photo", unit="steps")

        model = None
        if any(s != (W, H) for s in plan):
            model = fit(image, steps=steps, device=self.device, on_step=token.guard(report))
        outs = [render(model, image, s) if model is not None else image.clone() for s in plan]
        token.check()  # cancelled during the last step: write nothing
        result = to_uint8(strip(outs))[0]
        return result, self._save_png(result, "retargeted")

    # -- layout ------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        G = self.G
        # Gradio's copies of uploads and served files are dropped after keep_seconds (checked every <= 10 min).
        keep = max(1, int(self.keep_seconds))
        with gr.Blocks(title="ganbrush", delete_cache=(min(keep, 600), keep)) as demo:
            state = gr.State(_new_workspace)  # called once per browser session
            gr.Markdown("# ganbrush\nSemantic photo editing with a StyleGAN2 face generator and EdgeConnect. "
                        "1. upload a photo and find its faces, 2. invert one, 3. edit it with the sliders, "
                        "4. optionally paint a region to regenerate, 5. download the result. Or, after 1, "
                        "paint the face's label map and let SPADE redraw it (at the bottom).")
            with gr.Row():
                with gr.Column():
                    # A file, not gr.Image: Gradio's image converter would clip 16-bit photos, drop
                    # transparency and decode a bomb before the app could look at its header.
                    photo_in = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="photo")
                    photo_shown = gr.Image(label="Uploaded photo", interactive=False, height=240,
                                           elem_id="photo-preview")
                faces = gr.Gallery(label="Faces found (largest first)", columns=4, height=320, elem_id="faces")
            with gr.Row():
                detector = gr.Radio(["hog", "cnn"], value="hog", label="Face detector (cnn: turned faces, slower)")
                find_btn = gr.Button("Find faces", variant="primary", elem_id="find")
            gr.Markdown("## Inversion")
            with gr.Row():
                face_pick = gr.Dropdown(choices=[], label="Face", elem_id="face")
                method = gr.Radio(list(METHODS), value=self.default_method, label="Method", elem_id="method",
                                  info="encoder+pti: the encoder's result at once, then refined (Steps = tuning "
                                       "steps); encoder: one pass, no steps")
                steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="steps")
                invert_btn = gr.Button("Invert", variant="primary", elem_id="invert")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Row():
                aligned_img = gr.Image(label="Aligned face", format="png", interactive=False, height=256)
                recon_img = gr.Image(label="Reconstruction", format="png", interactive=False, height=256,
                                     elem_id="reconstruction")
                npz = gr.File(label="Inversion .npz: download it, or upload one to skip inverting",
                              file_types=[".npz"], elem_id="npz")
            gr.Markdown("## Edit")
            with gr.Row():
                with gr.Column(elem_id="directions"):
                    sliders = [gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=0, step=0.1, label=name,
                                         elem_id=f"dir-{name}") for name in self.names]
                with gr.Column():
                    restrict = gr.Checkbox(label="Only these layers (else each direction's own)", value=False)
                    first = gr.Slider(0, G.num_ws - 1, value=0, step=1, label="First layer (coarse)")
                    last = gr.Slider(0, G.num_ws - 1, value=G.num_ws - 1, step=1, label="Last layer (fine)")
                    edit_btn = gr.Button("Apply edits", variant="primary", elem_id="apply")
            gr.Markdown("## Regenerate a region (EdgeConnect)")
            with gr.Row():
                brush = gr.ImageEditor(label="Paint the region to regenerate", type="numpy", format="png",
                                       brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"), eraser=gr.Eraser(),
                                       sources=(), transforms=(), layers=False, canvas_size=(EDITOR_SIDE, EDITOR_SIDE),
                                       elem_id="brush")
                edges_ed = gr.ImageEditor(label="Edges: draw white to add, black to remove", type="numpy",
                                          format="png", brush=gr.Brush(colors=["#ffffff", "#000000"],
                                                                       color_mode="fixed"),
                                          sources=(), transforms=(), layers=False,
                                          canvas_size=(EDITOR_SIDE, EDITOR_SIDE), elem_id="edges")
                regen_face = gr.Image(label="Regenerated face", format="png", interactive=False, height=256)
            with gr.Row():
                # Only methods whose weights this installation has.
                inpaint_method = gr.Dropdown([m.value for m in ready_inpaint_methods()],
                                             value=default_inpaint_method().value,
                                             label="Inpainting method (the edges are edgeconnect's)")
                edges_btn = gr.Button("Predict edges", elem_id="predict-edges")
                regen_btn = gr.Button("Regenerate", variant="primary", elem_id="regenerate")
            gr.Markdown("## Result")
            rendering = gr.Radio([r.value for r in Rendering], value=Rendering.NATIVE.value, elem_id="rendering",
                                 label="Rendering (native: the photo keeps its own pixels and resolution, the "
                                       "generator supplies the change; generator: its render pasted, for comparison)")
            with gr.Row():
                original = gr.Image(label="Original", format="png", interactive=False, elem_id="original")
                result = gr.Image(label="Result", format="png", interactive=False, elem_id="result")
            result_file = gr.File(label="Download the result (PNG)", elem_id="result-file")
            with gr.Accordion("Everything at once (also the /pipeline API)", open=False):
                with gr.Row():
                    p_photo = gr.File(label="Photo", file_types=["image"])
                    p_mask = gr.File(label="Mask (white = regenerate; photo or face size)", file_types=["image"])
                    p_inv = gr.File(label="Inversion .npz (optional)", file_types=[".npz"])
                with gr.Row():
                    p_edits = gr.Textbox(label="Edits", placeholder="smile=2 age=-1@0-5")
                    p_face = gr.Number(value=0, precision=0, label="Face")
                    p_method = gr.Radio(list(METHODS), value=self.default_method, label="Method")
                    p_steps = gr.Number(value=DEFAULT_STEPS, precision=0, minimum=1, maximum=MAX_STEPS, label="Steps")
                    p_layers = gr.Textbox(label="Layers (FIRST-LAST, empty = each direction's own)")
                    p_rendering = gr.Radio([r.value for r in Rendering], value=Rendering.NATIVE.value,
                                           label="Rendering")
                with gr.Row():
                    p_btn = gr.Button("Run the pipeline")
                    p_stop = gr.Button("Stop", variant="stop")
                with gr.Row():
                    p_out = gr.Image(label="Result", format="png", interactive=False)
                    p_file = gr.File(label="Result (PNG)")
                    p_npz = gr.File(label="Inversion .npz")
            gr.Markdown("## Edit the label map (SPADE)\nThe picked face's semantic map: paint it with the class "
                        "colours (or press a preset), then Synthesize. SPADE draws the changed part in the face's "
                        "own style (or another, from a seed), and only that part of the uploaded photo changes "
                        "(the latent edits above are not part of it).")
            with gr.Row():
                labels_btn = gr.Button("Label map", variant="primary", elem_id="labels")
                preset_btns = [gr.Button(name.capitalize(), elem_id="preset-" + name.replace(" ", "-"))
                               for name in LABEL_PRESETS]
                reset_btn = gr.Button("Reset the map", elem_id="reset-labels")
            with gr.Row():
                colours = [_hex(c) for c in L.PALETTE]
                label_ed = gr.ImageEditor(label="Label map: paint with the class colours", type="numpy", format="png",
                                          brush=gr.Brush(colors=colours, default_color=colours[L.CLASS_INDEX["skin"]],
                                                         color_mode="fixed"),
                                          eraser=gr.Eraser(), sources=(), transforms=(), layers=False,
                                          canvas_size=(sem.MAP_SIZE, sem.MAP_SIZE), fixed_canvas=True, height=400,
                                          elem_id="label-map")
                label_face = gr.Image(label="Aligned face", format="png", interactive=False, height=sem.MAP_SIZE,
                                      elem_id="label-face")
                gr.HTML(_palette_legend(), label="Classes (brush colours in this order)")
            with gr.Row():
                # Text, not gr.Number: an empty Number shows and sends 0 from the browser, a seed like any other.
                style_seed = gr.Textbox(value="", placeholder="empty: the face's own style",
                                        label=f"Style seed (0..{MAX_STYLE_SEED}: another style)", elem_id="style-seed")
                synth_btn = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
            synth_renders = gr.Image(label="SPADE: own map | edited map | blended", format="png", interactive=False,
                                     elem_id="synth-renders")
            with gr.Row():
                synth_result = gr.Image(label="Synthesized photo", format="png", interactive=False,
                                        elem_id="synth-result")
                synth_file = gr.File(label="Download the synthesized photo (PNG)", elem_id="synth-file")
            gr.Markdown("## Retarget a photo (InGAN, GPNN)\nAny photo (not only faces) at other sizes and aspect "
                        "ratios: a GAN trained on this photo alone redraws it (a few minutes on a CPU the first time; "
                        "the model is kept, so further sizes of the same photo take a second), or GPNN rebuilds it "
                        "from its own patches (no training, about a minute per size). Both move and repeat content; "
                        "faces can come out with doubled features.")
            with gr.Row():
                rt_photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="retarget-photo")
                rt_sizes = gr.Textbox(label="Sizes WxH in the photo's pixels (comma-separated)",
                                      placeholder="1800x800, 840x800", elem_id="retarget-sizes")
                rt_steps = gr.Number(value=RETARGET_STEPS, precision=0, minimum=1, maximum=MAX_RETARGET_STEPS,
                                     label="Training steps (InGAN)", elem_id="retarget-steps")
                rt_method = gr.Radio([("InGAN (trained on the photo)", "ingan"),
                                      ("GPNN (patch nearest neighbours, no training)", "gpnn")],
                                     value="ingan", label="Method", elem_id="retarget-method")
                rt_btn = gr.Button("Retarget", variant="primary", elem_id="retarget")
                rt_stop = gr.Button("Stop", variant="stop", elem_id="retarget-stop")
            with gr.Row():
                rt_result = gr.Image(label="Retargeted (side by side)", format="png", interactive=False,
                                     elem_id="retarget-result")
                rt_file = gr.File(label="Download (PNG)", elem_id="retarget-file")

            face_outputs = [aligned_img, recon_img, npz, brush, edges_ed, result, result_file]
            photo_in.upload(_user_errors(self.preview), [photo_in], [photo_shown], api_name=False)
            find_btn.click(_user_errors(self.find_faces), [state, photo_in, detector], [faces, face_pick, original],
                           api_name="find_faces")
            faces.select(_picked_face, None, face_pick, api_name=False)
            inverting = invert_btn.click(_user_errors(self.invert), [state, face_pick, method, steps, rendering],
                                         face_outputs, api_name="invert")
            # encoder+pti shows a preview the user may already edit: the tuned inversion that
            # replaces it gets the sliders' edits again (a no-op render when they are all 0).
            inverting.success(_user_errors(self.apply_edits), [state, restrict, first, last, *sliders, rendering],
                              [brush, edges_ed, result, result_file], api_name=False)
            stop_btn.click(None, None, None, cancels=[inverting], api_name=False)
            npz.upload(_user_errors(self.load_inversion), [state, face_pick, npz, rendering], face_outputs,
                       api_name="load_inversion")
            edit_btn.click(_user_errors(self.apply_edits), [state, restrict, first, last, *sliders, rendering],
                           [brush, edges_ed, result, result_file], api_name="edit")
            edges_btn.click(_user_errors(self.predict_edges), [state, brush], [edges_ed],
                            api_name="predict_edges")
            regen_btn.click(_user_errors(self.regenerate), [state, brush, edges_ed, inpaint_method, rendering],
                            [regen_face, edges_ed, result, result_file], api_name="regenerate")
            running = p_btn.click(_user_errors(self.pipeline),
                                  [p_photo, p_edits, p_face, p_method, p_steps, p_layers, p_mask, p_inv, p_rendering],
                                  [p_out, p_file, p_npz], api_name="pipeline")
            p_stop.click(None, None, None, cancels=[running], api_name=False)
            labels_btn.click(_user_errors(self.label_map), [state, face_pick], [label_ed, label_face],
                             api_name="labels")
            for name, btn in zip(LABEL_PRESETS, preset_btns):
                btn.click(_user_errors(functools.partial(self.label_preset, name)), [state, label_ed], [label_ed],
                          api_name=False)
            reset_btn.click(_user_errors(self.reset_label_map), [state], [label_ed], api_name=False)
            synth_btn.click(_user_errors(self.synthesize), [state, label_ed, style_seed],
                            [synth_result, synth_file, synth_renders], api_name="synthesize")
            retargeting = rt_btn.click(_user_errors(self.retarget), [rt_photo, rt_sizes, rt_steps, rt_method],
                                       [rt_result, rt_file], api_name="retarget")
            rt_stop.click(None, None, None, cancels=[retargeting], api_name=False)
            # A closed tab (or gradio_client) does not cancel its running requests in Gradio: stop them here.
            demo.unload(self._session_closed)
        return demo


def _warm_up(G: Generator) -> None:
    """Build the lazily loaded models (LPIPS, EdgeConnect) before serving, so the first requests
    neither wait for them nor build them concurrently."""
    from ganbrush_core.metrics import lpips_model

    lpips_model("vgg", device=module_device(G))
    face = np.zeros((G.img_resolution, G.img_resolution, 3), np.uint8)
    hole = np.zeros(face.shape[:2], bool)
    hole[: G.img_resolution // 2] = True
    pipe.face_edges(face, hole, module_device(G))


def make_work_dir() -> Path:
    """The one folder the server writes to, removed at exit: ``ganbrush-app-*`` under Gradio's
    ``GRADIO_TEMP_DIR`` if set (else the system's temp folder). Gradio keeps its copies of uploads
    in it too (``GRADIO_TEMP_DIR`` is pointed at it), and serves the app's results from it."""
    parent = os.environ.get("GRADIO_TEMP_DIR")
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="ganbrush-app-", dir=parent or None)).resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir)  # read by gr.Blocks and by launch()
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    return work_dir


def create_app(generator: str = "default", directions_files: tuple[str, ...] = (),
               keep_seconds: float = CACHE_SECONDS, device: str | torch.device | None = None) -> App:
    """The handlers for ``generator`` (path or ``"default"``) with its directions; ``.build()``
    gives the Gradio Blocks. The models run on ``device`` (default ``"auto"``: CUDA when available,
    else the CPU; see :mod:`ganbrush_core.devices`)."""
    G = load_generator(generator, device=resolve_device(device))
    # Shared by concurrent requests: never trained here, so no request toggles its grad flags.
    G.eval().requires_grad_(False)
    _warm_up(G)
    return App(G, pipe.directions_for(G, directions_files), make_work_dir(), keep_seconds)


def build_app(generator: str = "default", directions_files: tuple[str, ...] = ()) -> gr.Blocks:
    """The Gradio Blocks app for ``generator`` (path or ``"default"``) with its directions."""
    return create_app(generator, directions_files).build()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, systemd, docker stop) and SIGINT shut down as Ctrl-C does


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the ganbrush web app (on this machine only, by default).")
    # Gradio's own variables give the defaults, as for any Gradio app.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT") or "7860",
                        help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    parser.add_argument("--directions", action="append", default=[], metavar="FILE.npz",
                        help="extra directions file (from `ganbrush directions`; repeatable)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests processed at once (others queue)")
    parser.add_argument("--keep-results", type=float, default=CACHE_SECONDS, metavar="SECONDS",
                        help=f"delete results and uploads older than this (default {CACHE_SECONDS})")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.keep_results <= 0:
        parser.error(f"--keep-results must be positive, got {args.keep_results}")
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")  # one line, before any model is loaded
    # SIGINT too: a process started from a non-interactive shell's background job inherits SIGINT as
    # ignored, and Python then installs no Ctrl-C handler of its own.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    # Every image Pillow decodes in this process (Gradio's brush layers too) is refused above
    # MAX_PIXELS (Pillow raises at twice its limit); load_photo checks photos from the header itself.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    app = create_app(args.generator, tuple(args.directions), args.keep_results, device)
    demo = app.build()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=False, max_file_size=MAX_FILE_SIZE,
                    ssr_mode=False, show_error=False, footer_links=["api"], prevent_thread_lock=True)
        while demo.is_running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("ganbrush app: shutting down", flush=True)
    finally:
        # Running inversions stop at their next step (a worker thread would otherwise keep the
        # process alive until it finished); then the server; atexit removes the work folder.
        app.cancel_session(None, "the server is shutting down")
        server = getattr(demo, "server", None)
        if server is not None:
            # uvicorn waits for open event streams (a client still listening) unless given a limit.
            server.config.timeout_graceful_shutdown = 2
        demo.close()
        shutil.rmtree(app.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
