"""Test oracle: otenim/GLCIC-PyTorch's completion network (``model_cn``), re-implemented.

Transcribed from the layer list of that repository's ``models.py``: attributes ``conv1`` ..
``conv17`` (``deconv13``, ``deconv15`` transposed), ``bn1`` .. ``bn16``, each layer applied as
``bn(relu(conv(x)))``, a sigmoid last; fixed widths 64 / 128 / 256 as published. Its input is
``cat(x * (1 - mask) + mpv * mask, mask)`` with ``x`` in [0, 1]. Written independently of
ganbrush's ``inpainting/glcic.py``: agreement between the two is the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# (name, in, out, kernel, stride, dilation); "deconv" names are 4x4 stride-2 transposed convs.
LAYERS = [
    ("conv1", 4, 64, 5, 1, 1), ("conv2", 64, 128, 3, 2, 1), ("conv3", 128, 128, 3, 1, 1),
    ("conv4", 128, 256, 3, 2, 1), ("conv5", 256, 256, 3, 1, 1), ("conv6", 256, 256, 3, 1, 1),
    ("conv7", 256, 256, 3, 1, 2), ("conv8", 256, 256, 3, 1, 4), ("conv9", 256, 256, 3, 1, 8),
    ("conv10", 256, 256, 3, 1, 16), ("conv11", 256, 256, 3, 1, 1), ("conv12", 256, 256, 3, 1, 1),
    ("deconv13", 256, 128, 4, 2, 1), ("conv14", 128, 128, 3, 1, 1), ("deconv15", 128, 64, 4, 2, 1),
    ("conv16", 64, 32, 3, 1, 1), ("conv17", 32, 3, 3, 1, 1),
]


class OfficialCompletionNetwork(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for i, (name, cin, cout, k, s, d) in enumerate(LAYERS, start=1):
            if name.startswith("deconv"):
                setattr(self, name, nn.ConvTranspose2d(cin, cout, k, stride=s, padding=1))
            else:
                setattr(self, name, nn.Conv2d(cin, cout, k, stride=s, padding=d * (k // 2), dilation=d))
            if i < len(LAYERS):
                setattr(self, f"bn{i}", nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (name, *_rest) in enumerate(LAYERS, start=1):
            x = getattr(self, name)(x)
            x = torch.sigmoid(x) if i == len(LAYERS) else getattr(self, f"bn{i}")(torch.relu(x))
        return x


def official_input(x: torch.Tensor, mask: torch.Tensor, mpv: torch.Tensor) -> torch.Tensor:
    """The repository's network input: the hole filled with ``mpv``, then the mask."""
    return torch.cat((x - x * mask + mpv.view(1, 3, 1, 1) * mask, mask), dim=1)


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (so the eval-mode normalisation matters); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
    return net.eval()


def save_official(net: nn.Module, path: Path, mpv: list[float] | None = None) -> Path:
    """``torch.save(model_cn.state_dict())`` as the repository does; with ``mpv`` also the run's
    ``config.json`` beside it."""
    torch.save(net.state_dict(), path)
    if mpv is not None:
        (path.parent / "config.json").write_text(json.dumps({"mpv": mpv, "ld_input_size": 96}))
    return path
