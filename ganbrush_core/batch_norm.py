"""Batch-norm running statistics measured exactly after training ("precise BN").

During training a batch norm normalises with the batch's own statistics and keeps an exponential
running average of them for eval mode. When the weights before it move fast (Adadelta's early
steps, a short run) that average lags behind the network it is used with, and eval-mode outputs
shift: the GLCIC default filled holes 0.01-0.04 too dark at their border. Re-measuring the
statistics with the final weights, as an equal-weight average over a fixed set of batches, removes
the lag without changing a single trained weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batch_norm(module: nn.Module, batches: Iterable[Any],
                           forward: Callable[[nn.Module, Any], Any] | None = None) -> nn.Module:
    """Replace the running mean and variance of every batch norm in ``module`` by their average
    over ``batches`` (each run through ``forward(module, batch)``, by default ``module(batch)``,
    in train mode and without gradients). Changes ``module`` in place and returns it in eval mode;
    its weights and the norms' momentum are unchanged. A module without batch norms is returned
    as it is (in eval mode); no batches at all is an error."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return module.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative (equal-weight) average over the batches
    module.train()
    count = 0
    try:
        for batch in batches:
            module(batch) if forward is None else forward(module, batch)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    if count == 0:
        raise ValueError("recalibrate_batch_norm needs at least one batch")
    return module.eval()
