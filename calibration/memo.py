"""Moved to :mod:`mesc.calibration.exits.memo`, the counts :mod:`mesc.metrics`; this old path warns
and goes away in the next release."""

from mesc.calibration._moved import forwarding as _forwarding

__getattr__, __dir__ = _forwarding(__name__, "mesc.calibration.exits.memo",
                                   renamed={"class_counts": "mesc.metrics:class_counts"})
