"""GLCIC (Iizuka, Simo-Serra and Ishikawa, "Globally and Locally Consistent Image Completion",
SIGGRAPH 2017): the completion network and the global + local context discriminators.

Conventions. The networks work in [0, 1] (as otenim/GLCIC-PyTorch, whose ``model_cn`` state dicts
:func:`inpainting.glcic_checkpoints.load_glcic` reads): images float ``[N, 3, H, W]`` RGB in
[0, 1]; masks ``[N, 1, H, W]`` in {0, 1} with 1 = hole. :func:`inpainting.glcic_inpaint.inpaint_glcic`
wraps them in the package's [-1, 1] API.

Every layer but the last is conv -> ReLU -> BatchNorm, the order of the PyTorch port, so its
weights load unchanged (the paper names the layers, not that order).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

DILATIONS = (2, 4, 8, 16)  # the paper's dilated middle: receptive field grows to 307 px at full width
DOWNSAMPLING = 4  # the completion network's encoder: two stride-2 convs
FEATURES = 1024  # each discriminator's FC output (paper)
DISC_CONVS = 5  # stride-2 5x5 convs of each discriminator (the paper's local one; 64-128 px globals)


class Prefill(str, Enum):
    """What the hole holds when the completion network sees it."""

    #: The paper: the training set's mean colour; the network draws the whole fill.
    MEAN = "mean"
    #: ganbrush's refinement variant (not in the paper): scikit-image's biharmonic fill, and the
    #: network's last layer (no sigmoid, zero at the start) adds a correction to it, so training
    #: starts from the classical fill and only learns what improves on it.
    BIHARMONIC = "biharmonic"


@dataclass(frozen=True)
class GlcicConfig:
    """Architecture of a completion network (saved with its weights). ``channels``: width of the
    first layer (paper 64); later layers use 2x and 4x. ``mean_color``: the training set's mean
    RGB in [0, 1], the colour the hole is filled with before the network sees it (with
    ``prefill`` ``"mean"``, the paper's; ``"biharmonic"``: see :class:`Prefill`)."""

    channels: int = 64
    mean_color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    prefill: str = Prefill.MEAN.value

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"GLCIC channels must be an even number >= 2, got {self.channels}")
        if len(self.mean_color) != 3 or not all(0 <= c <= 1 for c in self.mean_color):
            raise ValueError(f"mean_color must be 3 values in [0, 1], got {self.mean_color}")
        object.__setattr__(self, "mean_color", tuple(float(c) for c in self.mean_color))
        try:
            object.__setattr__(self, "prefill", Prefill(self.prefill).value)
        except ValueError:
            raise ValueError(f"GLCIC prefill must be one of {', '.join(p.value for p in Prefill)}, "
                             f"got {self.prefill!r}") from None

    @property
    def residual(self) -> bool:
        """Whether the network's output is a correction added to the prefilled input."""
        return self.prefill == Prefill.BIHARMONIC.value

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Block(nn.Module):
    """conv (or transposed conv) -> ReLU -> BatchNorm; the last layer is conv -> sigmoid."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 transposed: bool = False, last: bool = False) -> None:
        super().__init__()
        if transposed:
            self.conv: nn.Module = nn.ConvTranspose2d(cin, cout, kernel, stride, padding=1)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation)
        self.act = nn.Sigmoid() if last else nn.ReLU()
        self.norm = None if last else nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x))
        return x if self.norm is None else self.norm(x)


def completion_layers(c: int) -> list[dict]:
    """The 17 layers of the completion network at width ``c`` (paper: 64)."""
    return [
        dict(cin=4, cout=c, kernel=5),
        dict(cin=c, cout=2 * c, kernel=3, stride=2),
        dict(cin=2 * c, cout=2 * c, kernel=3),
        dict(cin=2 * c, cout=4 * c, kernel=3, stride=2),
        dict(cin=4 * c, cout=4 * c, kernel=3),
        dict(cin=4 * c, cout=4 * c, kernel=3),
        *(dict(cin=4 * c, cout=4 * c, kernel=3, dilation=d) for d in DILATIONS),
        dict(cin=4 * c, cout=4 * c, kernel=3),
        dict(cin=4 * c, cout=4 * c, kernel=3),
        dict(cin=4 * c, cout=2 * c, kernel=4, stride=2, transposed=True),
        dict(cin=2 * c, cout=2 * c, kernel=3),
        dict(cin=2 * c, cout=c, kernel=4, stride=2, transposed=True),
        dict(cin=c, cout=c // 2, kernel=3),
        dict(cin=c // 2, cout=3, kernel=3, last=True),
    ]


class CompletionNetwork(nn.Module):
    """Encoder to 1/4 resolution, dilated convs (rates 2, 4, 8, 16), decoder with two transposed
    convs, sigmoid output.

    ``forward`` takes :meth:`inputs`' 4 channels ``[N, 4, H, W]`` (H, W multiples of 4) and
    returns ``[N, 3, H, W]`` in [0, 1] over the whole image (composite it yourself). With a
    residual config (:attr:`GlcicConfig.residual`) the last layer has no sigmoid and starts at
    zero; its output is added to the prefilled image and may leave [0, 1] by a little.
    """

    def __init__(self, cfg: GlcicConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GlcicConfig()
        self.blocks = nn.Sequential(*(_Block(**spec) for spec in completion_layers(self.cfg.channels)))
        if self.cfg.residual:
            last = self.blocks[-1]
            last.act = nn.Identity()
            nn.init.zeros_(last.conv.weight)
            nn.init.zeros_(last.conv.bias)

    @property
    def mean_color(self) -> torch.Tensor:
        return torch.tensor(self.cfg.mean_color)

    def inputs(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:func:`completion_inputs` with this network's prefill."""
        return completion_inputs(image, mask, self.cfg.mean_color, self.cfg.prefill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        return x[:, :3] + out if self.cfg.residual else out


def biharmonic_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic fill of ``image`` ``[N, 3, H, W]`` in [0, 1] where ``mask``
    ``[N, 1, H, W]`` is 1 (on the CPU, image by image; no gradient)."""
    from inpainting.classical import inpaint_biharmonic

    filled = inpaint_biharmonic(image.detach() * 2 - 1, mask.detach())
    return ((filled + 1) / 2).to(image.dtype)


def completion_inputs(image: torch.Tensor, mask: torch.Tensor, mean_color: torch.Tensor | tuple,
                      prefill: Prefill | str = Prefill.MEAN) -> torch.Tensor:
    """The completion network's input ``[N, 4, H, W]``: ``image`` (``[N, 3, H, W]`` in [0, 1])
    with the hole (``mask`` 1) prefilled, then the mask. ``prefill`` ``"mean"``: the hole is
    ``mean_color`` (3 values in [0, 1]); ``"biharmonic"``: :func:`biharmonic_fill`."""
    if Prefill(prefill) is Prefill.BIHARMONIC:
        fill = biharmonic_fill(image, mask)
    else:
        fill = torch.as_tensor(mean_color, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return torch.cat((image * (1 - mask) + fill * mask, mask.to(image.dtype)), dim=1)


class _ContextBranch(nn.Module):
    """Five stride-2 5x5 convs (each conv -> ReLU -> BN), then an FC to ``features`` and a ReLU."""

    def __init__(self, size: int, channels: int, features: int) -> None:
        super().__init__()
        widths = [3, channels, 2 * channels, 4 * channels, 8 * channels, 8 * channels]
        self.convs = nn.Sequential(*(_Block(a, b, 5, stride=2) for a, b in zip(widths, widths[1:])))
        side = size
        for _ in range(DISC_CONVS):
            side = math.ceil(side / 2)  # 5x5, stride 2, padding 2
        self.fc = nn.Linear(widths[-1] * side * side, features)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"this discriminator takes {self.size}x{self.size} inputs, got "
                             f"{x.shape[-1]}x{x.shape[-2]}")
        return torch.relu(self.fc(self.convs(x).flatten(1)))


class ContextDiscriminator(nn.Module):
    """The global (whole ``image_size`` image) and local (``local_size`` patch around the hole,
    default half the image) discriminators, their 2 x ``features`` outputs concatenated and mapped
    to one real/fake logit ``[N]`` (no sigmoid: the losses take logits). Inputs in [0, 1]."""

    def __init__(self, image_size: int, local_size: int | None = None, channels: int = 64,
                 features: int = FEATURES) -> None:
        super().__init__()
        self.local_size = local_size or image_size // 2
        self.global_branch = _ContextBranch(image_size, channels, features)
        self.local_branch = _ContextBranch(self.local_size, channels, features)
        self.fc = nn.Linear(2 * features, 1)

    def forward(self, image: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        both = torch.cat((self.global_branch(image), self.local_branch(patch)), dim=1)
        return self.fc(both).squeeze(1)


def hole_patch_boxes(mask: torch.Tensor, size: int) -> torch.Tensor:
    """For each mask ``[N, 1, H, W]`` (1 = hole), the ``size`` x ``size`` box centred on its
    hole's bounding box, shifted inside the image: int64 ``[N, 2]`` of (top, left). A mask
    without a hole gets the centred box."""
    n, _, h, w = mask.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"patch size {size} must lie in 1..{min(h, w)} for {w}x{h} masks")
    hole = mask[:, 0] > 0.5
    rows, cols = hole.any(2), hole.any(1)  # [N, H], [N, W]
    boxes = torch.empty(n, 2, dtype=torch.int64)
    for i in range(n):
        centre = []
        for axis, extent in ((rows[i], h), (cols[i], w)):
            idx = axis.nonzero().flatten()
            mid = (int(idx[0]) + int(idx[-1]) + 1) / 2 if idx.numel() else extent / 2
            centre.append(min(max(round(mid - size / 2), 0), extent - size))
        boxes[i] = torch.tensor(centre)
    return boxes


def crop_patches(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` patches of ``images`` ``[N, C, H, W]`` at ``boxes`` ``[N, 2]``
    (top, left), stacked ``[N, C, size, size]``; gradients flow to ``images``."""
    return torch.stack([img[:, y:y + size, x:x + size] for img, (y, x) in zip(images, boxes.tolist())])
