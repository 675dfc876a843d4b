"""Calibration, in two stages: :mod:`mesc.calibration.exits` chooses the exits and their
thresholds (``mesc calibrate``); :mod:`mesc.calibration.precision` prepares FP16 and INT8 graphs
(``mesc prepare``)."""

from __future__ import annotations
