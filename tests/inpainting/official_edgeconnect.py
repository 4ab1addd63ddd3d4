"""Test oracle: the official knazeri/edge-connect generators' module layout, re-implemented.

Built from the layout of the official ``src/networks.py`` (Sequential indices, which layers carry
spectral norm and biases) with the legacy ``torch.nn.utils.spectral_norm`` hook the official code
uses, so state dicts have the official ``weight_orig`` / ``weight_u`` / ``weight_v`` keys. The
ganbrush networks use the newer parametrization API instead; agreement between the two is the test.
Width and depth are parameters so tests can use tiny models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.spectral_norm(module) if enabled else module


def _norm_relu(ch: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(ch, track_running_stats=False), nn.ReLU(True)]


class OfficialResnetBlock(nn.Module):
    def __init__(self, dim: int, dilation: int, sn: bool):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _sn(nn.Conv2d(dim, dim, kernel_size=3, dilation=dilation, bias=not sn), sn),
            *_norm_relu(dim),
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(dim, dim, kernel_size=3, bias=not sn), sn),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class OfficialGenerator(nn.Module):
    """``EdgeGenerator`` (in 3, out 1, sigmoid, spectral norm) or ``InpaintGenerator`` (in 4, out
    3, (tanh + 1) / 2, no spectral norm) of the official code."""

    def __init__(self, in_ch: int, out_ch: int, sn: bool, width: int = 64, blocks: int = 8):
        super().__init__()
        self.is_edge = out_ch == 1
        w1, w2, w4 = width, 2 * width, 4 * width
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), _sn(nn.Conv2d(in_ch, w1, kernel_size=7), sn), *_norm_relu(w1),
            _sn(nn.Conv2d(w1, w2, kernel_size=4, stride=2, padding=1), sn), *_norm_relu(w2),
            _sn(nn.Conv2d(w2, w4, kernel_size=4, stride=2, padding=1), sn), *_norm_relu(w4),
        )
        self.middle = nn.Sequential(*[OfficialResnetBlock(w4, 2, sn) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _sn(nn.ConvTranspose2d(w4, w2, kernel_size=4, stride=2, padding=1), sn), *_norm_relu(w2),
            _sn(nn.ConvTranspose2d(w2, w1, kernel_size=4, stride=2, padding=1), sn), *_norm_relu(w1),
            nn.ReflectionPad2d(3), nn.Conv2d(w1, out_ch, kernel_size=7),
        )

    def forward(self, x):
        y = self.decoder(self.middle(self.encoder(x)))
        return torch.sigmoid(y) if self.is_edge else (torch.tanh(y) + 1) / 2


def official_edge_generator(width: int = 64, blocks: int = 8) -> OfficialGenerator:
    return OfficialGenerator(3, 1, True, width, blocks)


def official_inpaint_generator(width: int = 64, blocks: int = 8) -> OfficialGenerator:
    return OfficialGenerator(4, 3, False, width, blocks)


def randomize(net: nn.Module, seed: int, power_iterations: int = 3) -> nn.Module:
    """Random weights (larger than the N(0, 0.02) init, so every layer matters), then a few train-mode
    forwards so the spectral-norm ``u``/``v`` move away from their initial values; returns ``net`` in
    eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    in_ch = 3 if net.is_edge else 4
    net.train()
    with torch.no_grad():
        for _ in range(power_iterations):
            net(torch.rand(1, in_ch, 16, 16, generator=g))
    return net.eval()


def save_official(net: nn.Module, path: Path, data_parallel: bool = False) -> Path:
    """Write ``{'iteration': ..., 'generator': state_dict}`` as the official ``BaseModel.save`` does;
    ``data_parallel`` prefixes keys with ``module.`` like an ``nn.DataParallel`` generator."""
    state = net.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"iteration": 1234, "generator": state}, path)
    return path
