"""Custom StyleGAN2 ops, each with ``impl="ref" | "cpp" | "cuda"`` (None: fastest available).

``ref`` is plain PyTorch and the oracle the compiled paths are tested against.
Compiled paths are built lazily on first use, never at import (see :mod:`.build`).
"""

from stylegan_ops.ops.bias_act import ACTIVATIONS, bias_act
from stylegan_ops.ops.build import OpsBuildError
from stylegan_ops.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "OpsBuildError",
    "bias_act",
    "downsample2d",
    "filter2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
