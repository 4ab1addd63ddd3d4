"""Stopping long work from another thread: a :class:`CancelToken` that the work checks as it goes.

A thread running torch cannot be interrupted from outside. Long loops (inversion, training) call a
progress callback every step instead, so the caller cancels by setting a token that its callback
checks: :meth:`CancelToken.check` raises :class:`Cancelled`, which unwinds the loop within one step
(``inversion.invert`` restores the generator's flags on the way out) before anything is written.

    token = CancelToken()
    invert(G, image, progress=token.guard(report))   # another thread: token.cancel("the user left")
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


class Cancelled(Exception):
    """The work was stopped on request (its client went away, the server is shutting down);
    ``str()`` is one line saying why. Not a ``ValueError``: nothing the user gave was wrong."""


class CancelToken:
    """A thread-safe, one-way flag: :meth:`cancel` from anywhere, :meth:`check` in the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled(self.reason)

    def guard(self, callback: Callable[P, None] | None = None) -> Callable[P, None]:
        """``callback`` (e.g. a ``progress(step, total, losses)``) that first checks the token."""

        def checked(*args: P.args, **kwargs: P.kwargs) -> None:
            self.check()
            if callback is not None:
                callback(*args, **kwargs)

        return checked
