"""The ranges of counts and sizes, checked where a library function takes them.

Every numeric option of a command declares its range twice: at the option (click's
``IntRange``/``FloatRange``, so ``mesc --help`` shows it and the shell gets click's one line),
and in the library function the command calls, through these checks, so a library user's
``batch=0`` or ``max_images=-1`` is refused in one line too instead of becoming an empty
``range`` or a Python slice. ``tests/cli/test_option_ranges.py`` fails on a numeric option
that declares no range.
"""

from __future__ import annotations

import math
import numbers

from mesc.errors import MescError


def check_int(name: str, value, low: int | None = None, high: int | None = None, optional: bool = False,
              error=MescError):
    """``value`` as an int when it is a whole number within ``[low, high]`` (``None`` too when
    ``optional``); else ``error`` naming ``name`` (the option, e.g. ``"--batch"``)."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
        (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise error(f"{name} must be {_whole(low, high)}{' (or None)' if optional else ''}, got {value!r}")
    return int(value)


def check_real(name: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, optional: bool = False, error=MescError):
    """``value`` as a float when it is a finite number within the range (bounds included unless
    ``low_open``/``high_open``; ``None`` too when ``optional``); else ``error`` naming ``name``."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise error(f"{name} must be {_real(low, high, low_open, high_open)}"
                    f"{' (or None)' if optional else ''}, got {value!r}")
    return float(value)


def _whole(low, high) -> str:
    if low is not None and high is not None:
        return f"a whole number from {low} to {high}"
    if low is not None:
        return f"a whole number >= {low}"
    return "a whole number" if high is None else f"a whole number <= {high}"


def _real(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return "a finite number" + (" " + " and ".join(parts) if parts else "")


__all__ = ["check_int", "check_real"]
