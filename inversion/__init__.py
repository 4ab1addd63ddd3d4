"""Faces in, latents out: photo loading, dlib detection and alignment, perceptual losses, and the
projection methods (Image2StyleGAN W+, the StyleGAN2 W projector, pivotal tuning).

    from inversion import load_photo, detect_faces, align_face, invert, paste_back
"""

from inversion.align import AlignedFace, Face, NoFaceError, align_face, align_native, detect_faces, paste_back
from inversion.photos import PhotoError, load_photo, save_photo
from inversion.project import METHODS, ProjectionSettings, invert
from inversion.result import Inversion, InversionFileError

__all__ = [
    "METHODS", "AlignedFace", "Face", "Inversion", "InversionFileError", "NoFaceError", "PhotoError",
    "ProjectionSettings", "align_face", "align_native", "detect_faces", "invert", "load_photo", "paste_back",
    "save_photo",
]
