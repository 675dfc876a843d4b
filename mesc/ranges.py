"""The ranges of counts and sizes, checked where a library function takes them.

Every numeric option of a command declares its range twice: at the option (:class:`Whole` and
:class:`Real`, click's ``IntRange``/``FloatRange`` refused in these checks' words, so
``mesc --help`` shows the range and the shell gets one line),
and in the library function the command calls, through these checks, so a library user's
``batch=0`` or ``max_images=-1`` is refused in one line too instead of becoming an empty
``range`` or a Python slice. ``tests/cli/test_option_ranges.py`` fails on a numeric option
that declares no range.
"""

from __future__ import annotations

import math
import numbers

import click

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


# ---------------------------------------------------------------------------------------------
# the same ranges as click option types

class RangeError(click.BadParameter):
    """An option value out of its declared range, in the library's own words (the message
    already names the option)."""

    def format_message(self) -> str:
        return self.message


def _option_name(param) -> str:
    return max(param.opts, key=len) if param is not None and param.opts else "value"


def _library_check(where: str, value, param, ctx) -> None:
    """Run the library's own check of the value, ``"module:function"`` (imported only when the
    option is given, so ``mesc --help`` stays light), where its message says more."""
    import importlib

    module, name = where.split(":")
    try:
        getattr(importlib.import_module(module), name)(value)
    except MescError as err:
        raise RangeError(str(err), ctx=ctx, param=param) from None


class Whole(click.IntRange):
    """A whole number in its range: click's IntRange (so ``--help`` shows the range), refused in
    the words the library function uses for the same value (:func:`mesc.ranges.check_int`, or
    ``check``, the library's own check as ``"module:function"``)."""

    def __init__(self, min=None, max=None, check: str | None = None):  # noqa: A002  (click's names)
        super().__init__(min, max)
        self.check = check

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)  # not a number: click's own message
        if self.check is not None:  # the library's check is the authority on its range
            _library_check(self.check, number, param, ctx)
            return number
        try:
            return check_int(_option_name(param), number, self.min, self.max)
        except MescError as err:
            raise RangeError(str(err), ctx=ctx, param=param) from None


class Real(click.FloatRange):
    """A finite number in its range (a plain FloatRange lets nan and inf through), refused in
    the library's words (:func:`mesc.ranges.check_real`, or ``check`` as for :class:`Whole`)."""

    def __init__(self, min=None, max=None, min_open: bool = False, max_open: bool = False,  # noqa: A002
                 check: str | None = None):
        super().__init__(min, max, min_open, max_open)
        self.check = check

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if self.check is not None:
            _library_check(self.check, number, param, ctx)
            return number
        try:
            return check_real(_option_name(param), number, self.min, self.max, self.min_open, self.max_open)
        except MescError as err:
            raise RangeError(str(err), ctx=ctx, param=param) from None


__all__ = ["Real", "RangeError", "Whole", "check_int", "check_real"]
