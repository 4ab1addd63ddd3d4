"""Research comparisons as commands: the evaluation protocols of DESIGN.md section 6 on any
images and checkpoints (``ganbrush compare inversion`` / ``ganbrush compare inpainting``).

- :mod:`ganbrush_compare.inversion`: inversion methods on held-out faces or a folder of photos
  (aligned with dlib where needed), under equal-steps and equal-wall-time budgets.
- :mod:`ganbrush_compare.inpainting`: inpainting methods on held-out faces or a folder of images,
  with irregular-mask bins or the user's own masks, one table row per hole-ratio bin and method.
- :mod:`ganbrush_compare.report`: the markdown table printed, CSV + JSON + an image grid written.

This package sits on top of every other (like the CLI and the app); ``benchmarks/inversion.py``
and ``benchmarks/inpainting.py`` are thin callers of it.
"""
