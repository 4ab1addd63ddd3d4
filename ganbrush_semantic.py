"""Semantic editing of a face in a photo: its label map, and the photo redrawn from an edited map.

``ganbrush labels PHOTO --out map.png`` writes the label map of a face (the aligned face's frame,
colour-coded with :data:`manipulate.labels.PALETTE`, plus ``map.index.png``). The user paints the
map (widens the mouth, closes an eye, moves the hairline) and ``ganbrush synthesize PHOTO --labels
edited.png --out result.png`` redraws the face:

1. the face's own map is derived again (same detection, alignment, parser and landmarks) and
   compared with the edited one: only where labels changed, plus a margin, is replaced;
2. SPADE draws the face from both maps in the face's own style (its style code, the same ``z``
   for both), so the two renders differ only where the maps do;
3. the edited render takes SPADE's drawing inside that region and the reconstruction outside it;
   EdgeConnect redraws a thin band on the region's border so the two meet without a seam;
4. the change from the reconstruction to the edited render reaches the photo at its own
   resolution through the edit transfer (:func:`manipulate.transfer.transfer_edit`: a flow that
   moves the photo's own pixels, e.g. the lips outwards, plus a low-frequency residual). Pixels
   outside the changed region are bit-identical to the photo.

Conventions: photos uint8 ``[H, W, 3]`` RGB; label maps uint8 ``[s, s]`` class indices in the
aligned frame; region masks bool ``[r, r]`` at the synthesizer's resolution, True = replaced.
"""

from __future__ import annotations

import argparse
import enum
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ganbrush_core.devices import add_device_argument
from ganbrush_core.images import IMAGE_SUFFIX_HINT, image_suffixes, to_uint8, uint8_to_float
from ganbrush_core.io import check_output, write_all
from inpainting import inpaint
from inversion import AlignedFace, Face, align_face, detect_faces
from inversion.align import Detector, pick_face
from manipulate import labels as L
from manipulate.face_parser import FaceParser, aligned_landmarks
from manipulate.spade import Synthesizer
from manipulate.synthesis import (
    StyleSpec,
    SynthesisError,
    changed_region,
    face_label_map,
    get_parser,
    get_synthesizer,
    style_of,
    synthesize,
)
from manipulate.transfer import transfer_edit

#: Side of the label map `ganbrush labels` writes (the parts are drawn sharp at any size; a
#: larger map is easier to paint on than the synthesizer's 64 px).
MAP_SIZE = 256
#: The replaced region grows by this fraction of the face side beyond the changed labels.
MARGIN = 0.06
#: The border of the replaced region is blended over this many px (at the synthesizer's
#: resolution) on each side: redrawn there by EdgeConnect, or cross-faded.
BLEND_BAND = 2


class Blend(str, enum.Enum):
    """How SPADE's drawing meets the reconstruction at the region's border: ``edgeconnect``
    redraws a band on the border with the learned inpainter; ``feather`` cross-fades the two over
    the same band (a smooth change, which the edit transfer carries to the photo as such)."""

    EDGECONNECT = "edgeconnect"
    FEATHER = "feather"


@dataclass
class FaceLabels:
    """A face's label map: ``aligned`` (at the parser's resolution), its landmarks in aligned px,
    and ``labels`` (uint8 ``[size, size]``) in the same frame."""

    aligned: AlignedFace
    landmarks: np.ndarray
    labels: np.ndarray
    faces: list[Face]


def photo_labels(photo: np.ndarray, face: int = 0, size: int = MAP_SIZE, detector: Detector = "hog",
                 parser: FaceParser | str | None = None, faces: list[Face] | None = None,
                 device: str | torch.device | None = None) -> FaceLabels:
    """Find the faces in ``photo`` (or take ``faces``), align face number ``face`` at the parser's
    resolution and label it at ``size``. The map depends only on the photo, the face and the
    parser (not on a synthesizer), so ``ganbrush labels`` and :func:`synthesize_photo` agree.
    The parser runs on ``device`` (``None``: the CPU); dlib always on the CPU."""
    if not isinstance(size, int) or not 16 <= size <= 2048:
        raise SynthesisError(f"the map size must be an integer from 16 to 2048 px, got {size!r}")
    faces = faces if faces is not None else detect_faces(photo, detector=detector)
    net = get_parser(parser, device or "cpu")
    aligned = align_face(photo, pick_face(faces, face, "face", SynthesisError), net.cfg.res)
    lm = aligned_landmarks(aligned)
    return FaceLabels(aligned, lm, face_label_map(aligned.image, lm, size, net), faces)


@dataclass
class SynthesisResult:
    """What :func:`synthesize_photo` made. ``photo``: the result at the input's size; ``region``:
    bool ``[r, r]`` replaced; ``reconstruction`` / ``synthesized`` / ``render``: uint8 ``[r, r, 3]``
    SPADE's drawing of the face's own map, of the edited map, and the blended edited render whose
    difference from the reconstruction went to the photo; ``labels``: the face's own map."""

    photo: np.ndarray
    region: np.ndarray
    reconstruction: np.ndarray
    synthesized: np.ndarray
    render: np.ndarray
    labels: FaceLabels


def feather_blend(inside: np.ndarray, outside: np.ndarray, region: np.ndarray, band: int = BLEND_BAND) -> np.ndarray:
    """uint8 ``[r, r, 3]``: ``inside`` in ``region``, ``outside`` beyond it, cross-faded over
    ``band`` px on each side of the border (a box-blurred mask, blurred twice)."""
    alpha = region.astype(np.float32)
    if band > 0:
        for _ in range(2):
            alpha = cv2.blur(alpha, (band + 1, band + 1), borderType=cv2.BORDER_REPLICATE)
    a = alpha[..., None]
    return np.clip(np.round(inside * a + outside * (1 - a)), 0, 255).astype(np.uint8)


def blend_border(render: np.ndarray, region: np.ndarray, band: int = BLEND_BAND,
                 device: str | torch.device | None = None) -> np.ndarray:
    """``render`` (uint8 ``[r, r, 3]``) with a band of ``band`` px on each side of ``region``'s
    border redrawn by EdgeConnect; pixels outside the band are kept exactly."""
    if band <= 0 or not region.any() or region.all():
        return render.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    r8 = region.astype(np.uint8)
    ring = (cv2.dilate(r8, kernel) > 0) & ~(cv2.erode(r8, kernel) > 0)
    mask = torch.from_numpy(ring.astype(np.float32))[None, None]
    out = to_uint8(inpaint(uint8_to_float(render), mask, method="edgeconnect", device=device).image)[0]
    out[~ring] = render[~ring]
    return out


def synthesize_photo(photo: np.ndarray, edited: np.ndarray, face: int = 0, style: StyleSpec = None,
                     model: Synthesizer | str | os.PathLike | None = None, parser: FaceParser | str | None = None,
                     margin: float = MARGIN, detector: Detector = "hog", faces: list[Face] | None = None,
                     blend: Blend | str = Blend.FEATHER, feather: float = 0.1,
                     device: str | torch.device | None = None) -> SynthesisResult:
    """``photo`` with face number ``face`` redrawn from the ``edited`` label map (uint8 ``[s, s]``
    in the aligned frame, as :func:`photo_labels` / ``ganbrush labels`` wrote it), in the face's
    own style (``style=None``) or another (a ``z`` tensor or an int seed). See the module
    docstring. A map equal to the face's own is refused (there is nothing to draw)."""
    edited = L.check_labels(edited, "the edited label map")
    if edited.shape[0] != edited.shape[1]:
        raise SynthesisError(f"the edited map is {edited.shape[1]}x{edited.shape[0]} px; it must be the square map "
                             "`ganbrush labels` wrote")
    net = get_synthesizer(model, device or "cpu")
    res = net.cfg.resolution
    own = photo_labels(photo, face, edited.shape[0], detector, parser, faces, device)
    aligned = own.aligned if own.aligned.res == res else align_face(photo, own.aligned.face, res)
    region = changed_region(own.labels, edited, res, margin)
    if not region.any():
        raise SynthesisError("the edited map equals the face's own: paint the change on the map `ganbrush labels` "
                             "wrote (with its palette) and pass that file")
    z = style if style is not None else style_of(aligned.image, net)
    recon = synthesize(None, own.labels, z, net)
    drawn = synthesize(None, edited, z, net)
    recon_u8, drawn_u8 = to_uint8(recon)[0], to_uint8(drawn)[0]
    if Blend(blend) is Blend.EDGECONNECT:
        render = blend_border(np.where(region[..., None], drawn_u8, recon_u8), region, device=device)
    else:
        render = feather_blend(drawn_u8, recon_u8, region)
    out = transfer_edit(photo, aligned, recon_u8, render, feather=feather)
    return SynthesisResult(out, region, recon_u8, drawn_u8, render, own)


# -- CLI --------------------------------------------------------------------------------------------
def _add_face_arguments(p: argparse.ArgumentParser) -> None:
    """Which face and how its map is made (the same for both commands, so their maps agree)."""
    p.add_argument("--face", type=int, default=0, help="which face, 0 = the largest")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    p.add_argument("--parser", default="default", help="face parser file (default: the shipped one)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ganbrush labels`` and ``ganbrush synthesize``."""
    p = sub.add_parser(
        "labels", help="write the semantic label map of a face in a photo (to edit for `ganbrush synthesize`)",
        description="Find the faces in PHOTO, align one and write its label map (background, skin, hair, brows, "
                    "eyes, nose, lips, inner mouth) colour-coded to --out and as class indices beside it "
                    "(NAME.index.png). Paint on the colour map with the palette that --palette prints.")
    p.add_argument("photo", help="photo file (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="colour-coded map (.png)")
    p.add_argument("--index", default=None, help="index map file (default: OUT with .index.png)")
    p.add_argument("--face-out", default=None, help="also write the aligned face at the map's size (to paint over)")
    p.add_argument("--size", type=int, default=MAP_SIZE, help="side of the map in px")
    p.add_argument("--palette", action="store_true", help="print the class colours")
    _add_face_arguments(p)
    add_device_argument(p)
    p.set_defaults(func=_labels_cli)

    s = sub.add_parser(
        "synthesize", help="redraw a face in a photo from an edited label map (SPADE), at the photo's resolution",
        description="Compare --labels (an edited copy of the map `ganbrush labels` wrote) with the face's own map, "
                    "draw the changed region with SPADE in the face's style, blend its border and carry "
                    "the change to the photo at its own resolution. Pixels outside the change stay exact.")
    s.add_argument("photo", help="photo file (JPEG, PNG, ...)")
    s.add_argument("--labels", required=True, help="the edited label map (colour-coded or index PNG)")
    s.add_argument("--out", required=True, help="output image file (.png, .jpg, ...)")
    s.add_argument("--style", default="own", help="'own' (the face's style, default) or an integer seed for another")
    s.add_argument("--render-out", default=None, help="also write SPADE's renders (own map | edited map | blended)")
    s.add_argument("--margin", type=float, default=MARGIN, help="region growth, fraction of the face side")
    s.add_argument("--blend", default=Blend.FEATHER.value, choices=[b.value for b in Blend],
                   help="how the drawn region meets the rest: feather (cross-fade, default) or edgeconnect "
                        "(the border redrawn by EdgeConnect)")
    s.add_argument("--synthesizer", default="default", help="SPADE file (default: the shipped one)")
    _add_face_arguments(s)
    add_device_argument(s)
    s.set_defaults(func=_synthesize_cli)


def _palette_text() -> str:
    return "\n".join(f"{i:2d} {name:<12} #{r:02x}{g:02x}{b:02x}" for i, (name, (r, g, b))
                     in enumerate(zip(L.CLASSES, L.PALETTE.tolist())))


def _labels_cli(args: argparse.Namespace) -> int:
    from PIL import Image

    from ganbrush_core.images import save_pil
    from inversion import load_photo

    if args.palette:
        print(_palette_text())
    out = Path(args.out)
    index = Path(args.index) if args.index else out.with_name(out.stem + ".index.png")
    targets = [check_output(out, args.force, {".png"}, "--out", ".png (lossless: a painted map must keep its colours)"),
               check_output(index, args.force, {".png"}, "--index", ".png")]
    if args.face_out:
        targets.append(check_output(args.face_out, args.force, image_suffixes(), "--face-out", IMAGE_SUFFIX_HINT))
    photo = load_photo(args.photo)
    fl = photo_labels(photo, args.face, args.size, detector=args.detector, parser=args.parser, device=args.device)
    with write_all(targets, args.force) as tmp:
        L.write_label_map(fl.labels, tmp[0], tmp[1], force=True)
        if args.face_out:
            big = align_face(photo, fl.aligned.face, args.size).image
            save_pil(Image.fromarray(big), tmp[2], force=True)
    counts = np.bincount(fl.labels.ravel(), minlength=L.NUM_CLASSES)
    present = ", ".join(c for c, n in zip(L.CLASSES, counts) if n)
    print(f"face {args.face} of {len(fl.faces)}: {args.size}x{args.size} map ({present}); wrote {out} and {index}")
    return 0


def _parse_style(text: str) -> StyleSpec:
    if text == "own":
        return None
    try:
        return int(text)
    except ValueError:
        raise SynthesisError(f"--style must be 'own' or an integer seed, got {text!r}") from None


def _synthesize_cli(args: argparse.Namespace) -> int:
    from PIL import Image

    from ganbrush_core.images import save_pil
    from inversion import load_photo, save_photo

    targets = [check_output(args.out, args.force, image_suffixes(), "--out", IMAGE_SUFFIX_HINT)]
    if args.render_out:
        targets.append(check_output(args.render_out, args.force, image_suffixes(), "--render-out", IMAGE_SUFFIX_HINT))
    style = _parse_style(args.style)
    if not 0 <= args.margin <= 0.5:
        raise SynthesisError(f"--margin must be from 0 to 0.5 (a fraction of the face side), got {args.margin}")
    edited = L.read_label_map(args.labels)
    photo = load_photo(args.photo)
    model = get_synthesizer(args.synthesizer, args.device)
    result = synthesize_photo(photo, edited, args.face, style, model, args.parser, args.margin, args.detector,
                              blend=args.blend, device=args.device)
    with write_all(targets, args.force) as tmp:
        save_photo(result.photo, tmp[0], force=True)
        if args.render_out:
            strip = np.concatenate([result.reconstruction, result.synthesized, result.render], 1)
            save_pil(Image.fromarray(strip), tmp[1], force=True)
    changed = int((result.photo != photo).any(-1).sum())
    print(f"face {args.face}: {result.region.mean():.1%} of the face redrawn; {changed} photo px changed; "
          f"wrote {args.out}")
    return 0
