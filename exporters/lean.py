"""The lean export (``mesc export --from-report REPORT.json``): only the exits a calibration
report chose, at most one candidate head per exit point, with the report's thresholds.

The report is read and checked before any model is loaded; its exit names are matched against
the traced model's once the model is captured. The lean package is an ordinary export of the
chosen exits (the partition merges the chunks of dropped points into the next segment), so the
kept exits keep their names (``exit1c2``), points and candidate indices, and every exit is
enabled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from mesc.errors import ExportError


@dataclasses.dataclass
class Chosen:
    """A calibration report's chosen configuration: the kept exits (shallow to deep) and the
    thresholds of the kept early exits (the final exit takes every image that reaches it)."""

    path: str
    exits: list[str]
    thresholds: dict  # kept early exit -> {"th_pix", "th_img"}
    identity: dict  # the package the report was computed on (calibration report's package_identity)


def _threshold(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ExportError(f"{where} must be a number in [0, 1], got {v!r}")
    return float(v)


def read_report(path) -> Chosen:
    """The chosen configuration of a ``mesc calibrate --report`` file, checked: an
    :class:`ExportError` names what makes the file no mesc calibration report."""
    where = f"--from-report {path}"
    try:
        rep = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ExportError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ExportError(f"{where}: not a JSON file ({err})") from None
    chosen = rep.get("chosen") if isinstance(rep, dict) else None
    if not isinstance(chosen, dict) or not all(k in rep for k in ("final_only", "cost")):
        raise ExportError(f"{where}: not a mesc calibration report (expected the JSON 'mesc calibrate --report' "
                          "writes, with 'chosen', 'final_only' and 'cost')")
    identity = rep.get("package_identity")
    from mesc.calibration.exits.report import IDENTITY_FIELDS

    if not isinstance(identity, dict) or any(k not in identity for k in IDENTITY_FIELDS):
        raise ExportError(f"{where}: the report does not record the package it was computed on (model, weights, "
                          f"input shape, exits, policy, confidence, band, precision), so its thresholds cannot be "
                          f"checked against this model; calibrate again with this mesc and export from that report")
    if chosen.get("policy", "mess") != "mess":
        raise ExportError(f"{where}: the chosen configuration uses the {chosen['policy']!r} policy; only MESS "
                          "thresholds (th_pix, th_img) can be written into a package")
    exits = chosen.get("exits")
    if not isinstance(exits, list) or not exits or not all(isinstance(e, str) and e for e in exits):
        raise ExportError(f"{where}: chosen.exits must be a non-empty list of exit names, got {exits!r}")
    if len(set(exits)) != len(exits):
        raise ExportError(f"{where}: chosen.exits names an exit twice: {exits}")
    thresholds = {}
    for name in exits[:-1]:
        th = {}
        for key in ("th_pix", "th_img"):
            table = chosen.get(key)
            if not isinstance(table, dict) or name not in table:
                raise ExportError(f"{where}: chosen.{key} gives no value for the kept exit {name!r}")
            th[key] = table[name]
        if th["th_img"] is None:
            continue  # an exit no image may leave at ("never"): mesc calibrate --write disables it too
        thresholds[name] = {k: _threshold(v, f"{where}: chosen.{k}[{name!r}]") for k, v in th.items()}
    return Chosen(str(path), [e for e in exits[:-1] if e in thresholds] + exits[-1:], thresholds, identity)


def export_identity(source: dict, weights, shape, opts) -> dict:
    """The identity fields (all but the exits) of the package this export writes, as a
    calibration report records its package's (:func:`mesc.calibration.exits.report.package_identity`)."""
    from mesc.calibration.exits.report import model_identity, precision_of
    from mesc.package import sha256_file

    return {"model": model_identity(source.get("model")),
            "weights_sha256": sha256_file(weights) if weights else None,
            "input_shape": list(shape[1:]),
            "policy": ["mess"],  # what the export compiles into every head
            "confidence": [opts.policy or "top1"],
            "band": [opts.edge_band if opts.edge else "none"],
            "precision": precision_of(opts.precision)}


def check_identity(chosen: Chosen, actual: dict) -> None:
    """Refuse a report computed on another package than the one this export writes: the
    first field that differs, with both values."""
    for key, value in actual.items():
        recorded = chosen.identity.get(key)
        if recorded != value:
            raise ExportError(f"--from-report {chosen.path}: the report was computed on a package whose {key} is "
                              f"{recorded!r}, and this export's {key} is {value!r}; its thresholds do not hold "
                              f"here: calibrate a package of this model and export from that report")


def select(chosen: Chosen, traced) -> list[int]:
    """The model exit positions of the report's kept exits, refused where the model has no such
    exit or two of them are candidates of one exit point."""
    names = traced.exit_names
    calibrated = chosen.identity["exits"]
    if not isinstance(calibrated, list) or [e for e in names if e in calibrated] != calibrated:
        raise ExportError(f"--from-report {chosen.path}: the report was computed on a package whose exits are "
                          f"{calibrated!r}, and this model's exits are {names!r}; was the report made on a package "
                          f"of another model?")
    unknown = [e for e in chosen.exits if e not in names]
    if unknown:
        raise ExportError(f"--from-report {chosen.path}: exit(s) {unknown} are not exits of this model, whose "
                          f"exits are {names}; was the report made on a package of another model?")
    selected = [names.index(e) for e in chosen.exits]
    if selected != sorted(selected):
        raise ExportError(f"--from-report {chosen.path}: chosen.exits {chosen.exits} are not in the model's order "
                          f"(shallow to deep: {[names[k] for k in sorted(selected)]})")
    by_point: dict = {}
    for k in selected:
        by_point.setdefault(traced.points[k], []).append(names[k])
    twice = next((v for v in by_point.values() if len(v) > 1), None)
    if twice:
        raise ExportError(f"--from-report {chosen.path}: keeps {twice}, candidate heads of one exit point; a lean "
                          "package keeps at most one head per point")
    return selected


__all__ = ["Chosen", "check_identity", "export_identity", "read_report", "select"]
