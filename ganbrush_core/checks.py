"""Checks of user-given numbers, with one wording for every API and CLI.

A number from a user (a command-line flag, a slider, a keyword argument) is checked where it
enters the library, before any slow work: NaN and infinities are refused (they silently turn
images black), and each quantity has a documented range (an unbounded one turns a typo into an
80,000-hour run or pastes noise into a photo). The message names the quantity, its range and the
value given, on one line.
"""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` as an ``int`` if it is a whole number in ``[lo, hi]``, else :class:`ValueError`
    ("NAME must be a whole number in the range LO..HI, got VALUE"). Booleans are not numbers here."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok = True  # 200.0 from a JSON client or a slider is a whole number
    if not ok or not lo <= int(value) <= hi:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a whole number in the range {lo}..{hi}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_float(name: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number in ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``), else :class:`ValueError` naming the range."""
    try:
        x = float(value)  # type: ignore[arg-type]
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    except (TypeError, ValueError):
        x, real = math.nan, False
    low_ok = x > lo if lo_open else x >= lo
    if not real or not math.isfinite(x) or not low_ok or x > hi:
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must be a finite number in the range {bracket}{lo:g}, {hi:g}], got {value!r}")
    return x
