"""ganbrush's foundation: the mechanisms every other package shares, written once.

Nothing here imports ``stylegan_ops``, ``inversion``, ``manipulate`` or ``inpainting``; they all
import from here. Modules:

- :mod:`ganbrush_core.io`: atomic writes (mode 0644, no temp file left behind), refuse-overwrite.
"""
