"""Exit-threshold calibration (``mesc calibrate``): which exits to keep and their thresholds.

The stages, each its own module: :mod:`~mesc.calibration.exits.memo` runs every exit once over a
labelled set, :mod:`~mesc.calibration.exits.search` chooses exits and thresholds from the memo,
:mod:`~mesc.calibration.exits.report` records and plots the result,
:mod:`~mesc.calibration.exits.manifest` writes it into the package, and
:mod:`~mesc.calibration.exits.calibration` (:func:`calibrate`) chains them. The search's
one-call wrapper stays :func:`mesc.calibration.exits.search.search` (exported here it would hide
its module).
"""

from __future__ import annotations

from mesc.calibration.exits.calibration import Calibration, calibrate, parse_max_cost
from mesc.calibration.exits.manifest import DISABLED_POLICY, exit_settings, write_configuration
from mesc.calibration.exits.memo import DEFAULT_TH_PIX_GRID, Memo, evaluate, image_stats, load_calibration_set
from mesc.calibration.exits.report import build_report, format_report, plot_pareto
from mesc.calibration.exits.search import (
    Configuration,
    Costs,
    InfeasibleBound,
    Searcher,
    SearchResult,
    costs_from_package,
    pareto_front,
)

__all__ = ["Calibration", "calibrate", "parse_max_cost",
           "DISABLED_POLICY", "exit_settings", "write_configuration",
           "DEFAULT_TH_PIX_GRID", "Memo", "evaluate", "image_stats", "load_calibration_set",
           "build_report", "format_report", "plot_pareto",
           "Configuration", "Costs", "InfeasibleBound", "Searcher", "SearchResult", "costs_from_package",
           "pareto_front"]
