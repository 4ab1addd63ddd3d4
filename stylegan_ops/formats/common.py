"""Pieces shared by the checkpoint format readers."""

from __future__ import annotations

import torch

from stylegan_ops.networks import Generator, GeneratorConfig

# Buffers rebuilt from the config rather than read from a file.
DERIVED_SUFFIXES = ("resample_filter",)


class FormatError(ValueError):
    """The file's content is not what its format requires; the message says what is wrong.
    :func:`stylegan_ops.load_generator` re-raises it as a ``CheckpointError`` naming the file."""


def generator_from_state(cfg: GeneratorConfig, state: dict[str, torch.Tensor]) -> Generator:
    """Build a float32 generator for ``cfg`` and fill it from ganbrush-named ``state``.

    Every parameter and buffer must be provided except derived ones and, optionally, ``w_avg``
    (left at zero for the caller to fill); extra or mis-shaped tensors are a :class:`FormatError`.
    """
    G = Generator(cfg)
    expected = G.state_dict()
    optional = ("mapping_network.w_avg",)
    missing = [k for k in expected if k not in state and not k.endswith(DERIVED_SUFFIXES) and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise FormatError(f"tensors do not fit the architecture: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise FormatError(f"tensor {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    G.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return G.eval()
