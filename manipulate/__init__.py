"""Latent directions and edits of StyleGAN2 latents.

- :mod:`manipulate.directions`: SeFa and GANSpace directions, their ``.npz`` files.
- :mod:`manipulate.edits`: moves along directions, style mixing and interpolation of ``ws``.
- :mod:`manipulate.edit`: named directions (shipped files, aliases) and :func:`edit`, the one call
  that edits an inversion or ``ws``.
- :mod:`manipulate.local_edit`: masked local edits (Image2StyleGAN++) and exact compositing.
- :mod:`manipulate.labels`: semantic label maps of faces (classes, palette, files, landmark parts);
  :mod:`manipulate.face_parser`: the face parser; :mod:`manipulate.spade`: SPADE and its baseline;
  :mod:`manipulate.synthesis`: :func:`synthesize`, a face drawn from a label map in a given style.
- :mod:`manipulate.retarget`: :func:`retarget`, a photo redrawn at another size and aspect ratio by
  InGAN trained on it (:mod:`manipulate.ingan`) or by GPNN (:mod:`manipulate.gpnn`, no training);
  baselines in :mod:`manipulate.seam_carving`.

    from manipulate import edit, local_edit
    result = edit(inversion, G, "smile", strength=2)      # result.image [N, 3, H, W] in [-1, 1]
    image = synthesize(face, label_map)                   # [1, 3, 64, 64], the face's own style
    wide = retarget("photo.jpg", (1800, 800))             # (width, height) at the photo's scale
"""

from manipulate.directions import Direction, DirectionsFileError, LayerRange, load_directions, parse_layers
from manipulate.edit import (
    ALIASES,
    Edit,
    EditResult,
    LatentMismatchError,
    UnknownDirectionError,
    available_directions,
    edit,
    parse_edit,
    resolve_direction,
    shipped_directions_files,
)
from manipulate.edits import interpolate, move, project_out, style_mix
from manipulate.local_edit import composite, load_mask, local_edit
from manipulate.retarget import retarget
from manipulate.synthesis import synthesize

__all__ = [
    "ALIASES", "Direction", "DirectionsFileError", "Edit", "EditResult", "LatentMismatchError", "LayerRange",
    "UnknownDirectionError", "available_directions", "composite", "edit", "interpolate", "load_directions",
    "load_mask", "local_edit", "move", "parse_edit", "parse_layers", "project_out", "resolve_direction",
    "retarget", "shipped_directions_files", "style_mix", "synthesize",
]
