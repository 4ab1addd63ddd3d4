"""Precise batch-norm statistics: exact averages over the given batches, weights untouched."""

import pytest
import torch
from torch import nn

from ganbrush_core.batch_norm import recalibrate_batch_norm


def test_running_statistics_become_the_average_over_the_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.1), nn.ReLU())
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.randn(8, 3, 6, 6) * (i + 1) + i for i in range(5)]
    with torch.no_grad():
        features = [net[0](b) for b in batches]
    got = recalibrate_batch_norm(net, batches)
    assert got is net and not net.training and net[1].momentum == 0.1
    bn = net[1]
    want_mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    want_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in features]).mean(0)
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, want_var, rtol=1e-5)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())
    # A custom forward (a network that takes prepared inputs).
    recalibrate_batch_norm(net, [(b,) for b in batches], lambda m, args: m(*args))
    assert torch.allclose(net[1].running_mean, want_mean, atol=1e-5)


def test_no_norms_and_no_batches():
    linear = nn.Linear(2, 2).train()
    assert recalibrate_batch_norm(linear, []) is linear and not linear.training
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batch_norm(nn.BatchNorm1d(2), [])
