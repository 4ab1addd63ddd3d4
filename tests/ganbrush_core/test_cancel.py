"""ganbrush_core.cancel: a token set from another thread stops an inversion at its next step."""

import threading

import pytest
import torch

from ganbrush_core.cancel import Cancelled, CancelToken
from inversion import invert


def test_token_checks_and_guards():
    token, seen = CancelToken(), []
    guarded = token.guard(lambda *args: seen.append(args))
    guarded(1, 2, {})
    token.check()
    threading.Thread(target=token.cancel, args=("the user left",)).start()
    token._event.wait(5)
    assert token.cancelled
    with pytest.raises(Cancelled, match="the user left"):
        guarded(2, 2, {})
    assert seen == [(1, 2, {})]
    token.cancel("later reason")  # the first reason stays
    assert token.reason == "the user left"


def test_a_cancelled_inversion_stops_at_the_next_step_and_restores_the_generator(small_generator):
    token, steps = CancelToken(), []

    def progress(step: int, total: int, losses: dict[str, float]) -> None:
        steps.append(step)
        if step == 3:
            token.cancel("stop")

    flags = [p.requires_grad for p in small_generator.parameters()]
    with pytest.raises(Cancelled, match="stop"):
        invert(small_generator, torch.zeros(1, 3, 16, 16), "w+", steps=1000, progress=token.guard(progress),
               perceptual=lambda a, b: (a - b).square().mean((1, 2, 3)), w_avg_samples=100)
    assert steps == [1, 2, 3]
    assert [p.requires_grad for p in small_generator.parameters()] == flags
