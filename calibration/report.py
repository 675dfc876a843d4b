"""Moved to :mod:`mesc.calibration.exits` (calibration, report, manifest); this old path warns
and goes away in the next release."""

from mesc.calibration._moved import forwarding as _forwarding

# each name where it is defined: calibration imports from report and manifest, so it comes last
__getattr__, __dir__ = _forwarding(__name__, "mesc.calibration.exits.report", "mesc.calibration.exits.manifest",
                                   "mesc.calibration.exits.calibration")
