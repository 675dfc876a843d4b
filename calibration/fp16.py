"""Moved to :mod:`mesc.calibration.precision.fp16`; this old path warns and goes away in the next release."""

from mesc.calibration._moved import forwarding as _forwarding

__getattr__, __dir__ = _forwarding(__name__, "mesc.calibration.precision.fp16")
