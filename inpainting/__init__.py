"""ganbrush inpainting: EdgeConnect (edge + inpainting generators, official checkpoints), GLCIC
(completion network, context discriminators, GLCIC-PyTorch checkpoints) and classical baselines
(OpenCV Telea / Navier-Stokes, scikit-image biharmonic, PatchMatch).

Conventions: images float ``[N, 3, H, W]`` RGB in [-1, 1]; masks
``[N, 1, H, W]`` in {0, 1} with 1 = hole; edge maps ``[N, 1, H, W]`` in [0, 1] with 1 = edge.
"""

from inpainting.checkpoints import (
    CheckpointError,
    EdgeConnect,
    load_edgeconnect,
    load_generator,
    save_edgeconnect,
    save_generator,
)
from inpainting.classical import inpaint_biharmonic, inpaint_ns, inpaint_patchmatch, inpaint_telea
from inpainting.edges import canny_edges, to_gray
from inpainting.glcic import CompletionNetwork, ContextDiscriminator, GlcicConfig, Prefill
from inpainting.glcic_checkpoints import load_glcic, save_glcic
from inpainting.glcic_inpaint import inpaint_glcic, poisson_blend
from inpainting.inpaint import (
    GLCIC_METHODS,
    METHODS,
    InpaintResult,
    Method,
    default_method,
    inpaint,
    inpaint_edgeconnect,
    predict_edges,
    ready_methods,
)
from inpainting.masks import load_irregular_mask, random_mask
from inpainting.networks import (
    EdgeConnectGenerator,
    EdgeGenerator,
    GeneratorConfig,
    GeneratorKind,
    InpaintGenerator,
    PatchDiscriminator,
)
from inpainting.residual_aggregation import inpaint_native, upscale_fill

__all__ = [
    "GLCIC_METHODS",
    "METHODS",
    "CheckpointError",
    "CompletionNetwork",
    "ContextDiscriminator",
    "EdgeConnect",
    "EdgeConnectGenerator",
    "EdgeGenerator",
    "GeneratorConfig",
    "GeneratorKind",
    "GlcicConfig",
    "InpaintGenerator",
    "InpaintResult",
    "Method",
    "PatchDiscriminator",
    "Prefill",
    "canny_edges",
    "default_method",
    "inpaint",
    "inpaint_biharmonic",
    "inpaint_edgeconnect",
    "inpaint_glcic",
    "inpaint_native",
    "inpaint_ns",
    "inpaint_patchmatch",
    "inpaint_telea",
    "load_edgeconnect",
    "load_generator",
    "load_glcic",
    "load_irregular_mask",
    "poisson_blend",
    "predict_edges",
    "random_mask",
    "ready_methods",
    "save_edgeconnect",
    "save_generator",
    "save_glcic",
    "to_gray",
    "upscale_fill",
]
