"""Moved to :mod:`mesc.calibration.precision` (feeds, nodes) and
:mod:`mesc.runtime.backends.onnxrt.chain` (OrtChain); this old path warns
and goes away in the next release."""

from mesc.calibration._moved import forwarding as _forwarding

__getattr__, __dir__ = _forwarding(__name__, "mesc.runtime.backends.onnxrt.chain", "mesc.calibration.precision.feeds",
                                   "mesc.calibration.precision.nodes")
