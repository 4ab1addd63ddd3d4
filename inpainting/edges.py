"""Canny edge maps as EdgeConnect uses them (scikit-image, sigma 2, no edges detected in the hole)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

DEFAULT_SIGMA = 2.0


def to_gray(image01: torch.Tensor) -> torch.Tensor:
    """RGB ``[N, 3, H, W]`` in [0, 1] -> luminance ``[N, 1, H, W]`` in [0, 1] (scikit-image's
    ``rgb2gray`` weights, as the official data loader)."""
    arr = image01.detach().permute(0, 2, 3, 1).cpu().double().numpy()
    gray = np.stack([rgb2gray(a) for a in arr])
    return torch.from_numpy(gray).to(image01.dtype).unsqueeze(1).to(image01.device)


def canny_edges(gray01: torch.Tensor, mask: torch.Tensor | None = None, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Binary Canny edges ``[N, 1, H, W]`` (1 = edge) of grey ``[N, 1, H, W]`` in [0, 1].

    With ``mask`` (``[N, 1, H, W]``, 1 = hole) only the known pixels are searched, so the hole's
    border and content make no edges (the official test-time loader does the same).
    """
    out = []
    for i in range(gray01.shape[0]):
        g = gray01[i, 0].detach().cpu().double().numpy()
        known = None if mask is None else (mask[i, 0].detach().cpu().numpy() < 0.5)
        out.append(canny(g, sigma=sigma, mask=known))
    return torch.from_numpy(np.stack(out)).to(gray01.dtype).unsqueeze(1).to(gray01.device)
