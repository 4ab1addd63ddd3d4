"""The inpainting API: float NCHW RGB in [-1, 1], masks ``[N, 1, H, W]`` with 1 = hole, edge maps
``[N, 1, H, W]`` in [0, 1] with 1 = edge. Outputs are composited: outside the hole the result is
the input exactly.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganbrush_core.devices import module_device, on_device, resolve_device
from ganbrush_core.masks import check_mask
from inpainting.checkpoints import EdgeConnect, load_edgeconnect
from inpainting.classical import inpaint_biharmonic, inpaint_ns, inpaint_patchmatch, inpaint_telea
from inpainting.edges import DEFAULT_SIGMA, canny_edges, to_gray
from inpainting.glcic import CompletionNetwork, Prefill
from inpainting.glcic_checkpoints import has_default_glcic
from inpainting.networks import SIZE_MULTIPLE, edge_inputs, inpaint_inputs

# Tolerance for images that were scaled to [-1, 1] with rounding error.
_RANGE_SLACK = 1e-3


class Method(str, enum.Enum):
    """Inpainting methods behind :func:`inpaint` and :data:`METHODS`."""

    EDGECONNECT = "edgeconnect"
    TELEA = "telea"
    NS = "ns"
    BIHARMONIC = "biharmonic"
    PATCHMATCH = "patchmatch"
    GLCIC = "glcic"
    #: ganbrush's variant, not the paper's method: a GLCIC network that corrects the biharmonic fill.
    GLCIC_REFINE = "glcic-refine"


#: The GLCIC methods and the prefill of their networks (:class:`inpainting.glcic.Prefill`).
GLCIC_METHODS: dict[Method, Prefill] = {Method.GLCIC: Prefill.MEAN, Method.GLCIC_REFINE: Prefill.BIHARMONIC}


def ready_methods() -> list[Method]:
    """The methods that run without weights passed by the user: defaults for loops over all
    methods (CLI choices' defaults, comparisons, benchmarks, the app). A GLCIC method is left out
    of an installation that lacks its default weights."""
    return [m for m in Method if m not in GLCIC_METHODS or has_default_glcic(GLCIC_METHODS[m])]


def default_method() -> Method:
    """The method the pipeline and the app use unless told otherwise: the best measured one this
    installation has (README, the inpainting table): glcic-refine where its weights are shipped,
    else EdgeConnect."""
    return Method.GLCIC_REFINE if Method.GLCIC_REFINE in ready_methods() else Method.EDGECONNECT


@dataclass
class InpaintResult:
    """``image``: the composited result ``[N, 3, H, W]`` in [-1, 1]; ``edges``: the edge map the
    EdgeConnect inpainter used (``[N, 1, H, W]`` in [0, 1], Canny outside the hole, predicted or
    user-given inside), ``None`` for the classical methods."""

    image: torch.Tensor
    edges: torch.Tensor | None = None


def check_image(image: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is float ``[N, 3, H, W]`` in [-1, 1]."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be RGB [N, 3, H, W], got {list(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [-1, 1], got {image.dtype}")
    if image.numel() and (image.min() < -1 - _RANGE_SLACK or image.max() > 1 + _RANGE_SLACK):
        raise ValueError("image values must lie in [-1, 1] (convert uint8 with x / 127.5 - 1)")


def _pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_w, 0, pad_h))
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@functools.lru_cache(maxsize=2)
def _default_model(device: torch.device) -> EdgeConnect:
    return load_edgeconnect(device=device)


def _edge_maps(model: EdgeConnect, image01: torch.Tensor, mask: torch.Tensor, user_edges: torch.Tensor | None,
               sigma: float) -> torch.Tensor:
    """Composite edges on padded inputs: Canny of the known pixels outside the hole, the user's
    edges (if given) or G1's prediction inside."""
    gray = to_gray(image01)
    known_edges = canny_edges(gray, mask, sigma)
    inside = user_edges if user_edges is not None else model.edge_generator(edge_inputs(gray, known_edges, mask))
    return inside * mask + known_edges * (1 - mask)


def _prepare(model: EdgeConnect | None, image: torch.Tensor, mask: torch.Tensor,
             device: str | torch.device | None) -> tuple[EdgeConnect, torch.Tensor, torch.Tensor]:
    check_image(image)
    check_mask(mask, tuple(image.shape[-2:]))
    if mask.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {mask.shape[0]} masks")
    if model is None:
        model = _default_model(resolve_device("cpu" if device is None else device))
    model = on_device(model, device)
    device = module_device(model)
    image01 = _pad_to_multiple((image.to(device, torch.float32) + 1) / 2, SIZE_MULTIPLE)
    # Padding is known (0): replicated border pixels, never part of the hole.
    mask_p = _pad_to_multiple(mask.to(device, torch.float32), SIZE_MULTIPLE, mode="constant")
    return model, image01, mask_p


@torch.no_grad()
def predict_edges(image: torch.Tensor, mask: torch.Tensor, model: EdgeConnect | None = None,
                  sigma: float = DEFAULT_SIGMA, device: str | torch.device | None = None) -> torch.Tensor:
    """G1's edge map ``[N, 1, H, W]`` in [0, 1]: Canny (``sigma``) outside the hole, predicted
    inside. Edit it and pass it back as ``inpaint(..., edges=)`` to steer the fill. ``device``: as
    for :func:`inpaint`."""
    model, image01, mask_p = _prepare(model, image, mask, device)
    edges = _edge_maps(model, image01, mask_p, None, sigma)
    return edges[..., : image.shape[-2], : image.shape[-1]].to(image.device)


@torch.no_grad()
def inpaint_edgeconnect(image: torch.Tensor, mask: torch.Tensor, edges: torch.Tensor | None = None,
                        model: EdgeConnect | None = None, sigma: float = DEFAULT_SIGMA,
                        device: str | torch.device | None = None) -> InpaintResult:
    """EdgeConnect: G1 completes the Canny edges inside the hole (or ``edges`` given by the user
    replace that prediction there), G2 fills the hole guided by them. Any image size works (padded
    to a multiple of 4, cropped back). ``model`` defaults to the model shipped with ganbrush;
    ``device`` as for :func:`inpaint`."""
    h, w = image.shape[-2:]
    model, image01, mask_p = _prepare(model, image, mask, device)
    user = None
    if edges is not None:
        if edges.ndim != 4 or edges.shape[1] != 1 or edges.shape[0] != image.shape[0] or edges.shape[-2:] != (h, w):
            raise ValueError(f"edges must be [N, 1, H, W] like the mask, got {list(edges.shape)}")
        if edges.min() < 0 or edges.max() > 1:
            raise ValueError("edge values must lie in [0, 1] (1 = edge)")
        user = _pad_to_multiple(edges.to(mask_p.device, torch.float32), SIZE_MULTIPLE, mode="constant")
    composite = _edge_maps(model, image01, mask_p, user, sigma)
    out01 = model.inpaint_generator(inpaint_inputs(image01, composite, mask_p))
    out = (out01[..., :h, :w] * 2 - 1).to(image.device, image.dtype)
    return InpaintResult(image=torch.where(mask > 0.5, out, image), edges=composite[..., :h, :w].to(image.device))


def _edgeconnect_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return inpaint_edgeconnect(image, mask).image


def _glcic_image(image: torch.Tensor, mask: torch.Tensor, prefill: Prefill = Prefill.MEAN) -> torch.Tensor:
    from inpainting.glcic_inpaint import inpaint_glcic  # imports this module

    return inpaint_glcic(image, mask, prefill=prefill)


InpaintFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS: dict[Method, InpaintFn] = {
    Method.EDGECONNECT: _edgeconnect_image,
    Method.TELEA: inpaint_telea,
    Method.NS: inpaint_ns,
    Method.BIHARMONIC: inpaint_biharmonic,
    Method.PATCHMATCH: inpaint_patchmatch,
    Method.GLCIC: _glcic_image,
    Method.GLCIC_REFINE: functools.partial(_glcic_image, prefill=Prefill.BIHARMONIC),
}


def inpaint(image: torch.Tensor, mask: torch.Tensor, edges: torch.Tensor | None = None, *,
            method: Method | str = Method.EDGECONNECT, model: EdgeConnect | CompletionNetwork | None = None,
            sigma: float = DEFAULT_SIGMA, poisson: bool = True, device: str | torch.device | None = None
            ) -> InpaintResult:
    """Fill the holes of ``image`` ``[N, 3, H, W]`` in [-1, 1] where ``mask`` ``[N, 1, H, W]`` is 1.

    ``edges`` (EdgeConnect only) is a user-drawn or edited edge map ``[N, 1, H, W]`` in [0, 1]
    whose values inside the hole replace G1's prediction. ``model`` comes from
    :func:`load_edgeconnect` or, for GLCIC, :func:`load_glcic` (by default the shipped models).
    ``poisson`` (the GLCIC methods only): Poisson-blend the fill into the hole's border, the paper's
    post-processing. Pixels outside the hole are returned unchanged; a mask without holes returns
    a copy of the image.

    ``device`` (EdgeConnect and GLCIC; a name or :class:`torch.device`, see :mod:`ganbrush_core.devices`):
    where the networks run; ``None``: where ``model`` is (the shipped model: the CPU). Canny and
    the classical methods run on the CPU; the result is on ``image``'s device.
    """
    try:
        method = Method(method)
    except ValueError as e:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(m.value for m in Method)}") from e
    if not poisson and method not in GLCIC_METHODS:
        raise ValueError(f"poisson=False only applies to the glcic methods, not {method.value}")
    if method is Method.EDGECONNECT:
        return inpaint_edgeconnect(image, mask, edges, model=model, sigma=sigma, device=device)
    if method in GLCIC_METHODS and edges is None:
        from inpainting.glcic_inpaint import inpaint_glcic  # imports this module

        prefill = GLCIC_METHODS[method]
        if isinstance(model, CompletionNetwork) and model.cfg.prefill != prefill.value:
            other = next(m for m, p in GLCIC_METHODS.items() if p.value == model.cfg.prefill)
            raise ValueError(f"this completion network was trained with the {model.cfg.prefill} prefill: "
                             f"use method {other.value}, not {method.value}")
        return InpaintResult(image=inpaint_glcic(image, mask, model, poisson=poisson, device=device, prefill=prefill))
    if edges is not None or model is not None:
        raise ValueError(f"edges are only used by the edgeconnect method and model by edgeconnect and glcic, "
                         f"not {method.value}")
    check_image(image)
    check_mask(mask, tuple(image.shape[-2:]))
    return InpaintResult(image=METHODS[method](image, mask))
