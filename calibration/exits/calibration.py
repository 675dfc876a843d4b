"""``mesc calibrate``: memo -> search -> report (text, JSON, Pareto plot) -> manifest.

:func:`calibrate` is what the command calls and what a library user calls::

    from mesc.calibration.exits import calibrate
    out = calibrate("pkg", "calib_data/", max_drop=1.0, report="calib.json", plot="pareto.png", write=True)
    out.result.best            # the chosen Configuration

``write=True`` stores the chosen thresholds in the package manifest
(:mod:`mesc.calibration.exits.manifest` says how dropped exits are marked).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from mesc.calibration.exits import memo as memo_mod
from mesc.calibration.exits.manifest import write_configuration
from mesc.calibration.exits.report import build_report, load_pyplot, plot_pareto
from mesc.calibration.exits.search import InfeasibleBound, Searcher, architectures, costs_from_package
from mesc.errors import CalibrationError, MescError
from mesc.progress import iterate


@dataclass
class Calibration:
    result: object      # search.SearchResult
    memo: object        # memo.Memo
    costs: object       # search.Costs
    report: dict
    compare: dict       # other policy -> SearchResult (with compare_policies)


# calibration sets smaller than these are refused / warned about (options --min-images, --warn-images)
MIN_IMAGES = 5
WARN_IMAGES = 50


class CalibrationWarning(UserWarning):
    """The calibration can run, but its thresholds deserve little trust (too few images)."""


def _cost_bound(value) -> tuple[float, bool]:
    """``--max-cost`` as (number, whether it is a percentage of the final-only cost)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, percent = float(value), False
    else:
        text = str(value).strip()
        percent = text.endswith("%")
        try:
            number = float(text[:-1] if percent else text)
        except ValueError:
            raise CalibrationError(f"--max-cost: expected a number or a percentage of the final-only cost "
                                   f"(e.g. 12.5 or 60%), got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise CalibrationError(f"--max-cost must be a positive number or N% with N > 0, got {value!r}")
    return number, percent


def parse_max_cost(value, reference_cost: float) -> float:
    """A cost bound: a number in the cost unit, or ``N%`` of the final-only cost."""
    if value is None:
        return None
    number, percent = _cost_bound(value)
    return number / 100.0 * reference_cost if percent else number


def _need_int(value, least: int, option: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise CalibrationError(f"{option} must be an integer of at least {least}, got {value!r}")


def check_options(max_drop=None, max_cost=None, limit=None, th_img_steps: int = 50, min_images: int = MIN_IMAGES,
                  warn_images: int = WARN_IMAGES) -> None:
    """Refuse calibrate's numeric options before anything is loaded or run."""
    if (max_drop is None) == (max_cost is None):
        raise CalibrationError("give exactly one bound: --max-drop PP (mIoU drop vs the final exit) or "
                               "--max-cost COST")
    if max_drop is not None and not (isinstance(max_drop, (int, float)) and not isinstance(max_drop, bool)
                                     and math.isfinite(max_drop) and max_drop >= 0):
        raise CalibrationError(f"--max-drop must be a finite number >= 0 (percentage points), got {max_drop!r}")
    if max_cost is not None:
        _cost_bound(max_cost)
    if limit is not None:
        _need_int(limit, 1, "--limit")
    _need_int(th_img_steps, 2, "--th-img-steps")
    _need_int(min_images, 1, "--min-images")
    _need_int(warn_images, 0, "--warn-images")


def check_image_count(n: int, data, min_images: int = MIN_IMAGES, warn_images: int = WARN_IMAGES) -> None:
    """Refuse fewer than ``min_images`` calibration images; warn under ``warn_images``."""
    if n < min_images:
        raise CalibrationError(f"calibrate needs at least {min_images} labelled images (--min-images), got {n} "
                               f"from {data}; thresholds deserve trust from about {warn_images} on")
    if n < warn_images:
        warnings.warn(f"thresholds chosen on {n} images will overfit; use at least {warn_images}",
                      CalibrationWarning, stacklevel=3)


def calibrate(package, data, max_drop=None, max_cost=None, policy: str = "mess", report=None, plot=None,
              write: bool = False, resize: bool = False, cache=None, latency_key=None, all_exits: bool = False,
              th_pix_grid=None, th_img_steps: int = 50, limit=None, compare_policies: bool = False,
              progress: bool = False, min_images: int = MIN_IMAGES, warn_images: int = WARN_IMAGES,
              force: bool = False, split: str | None = None, backend: str = "onnxruntime",
              device="cpu") -> Calibration:
    """Every option is checked before an image is read (:func:`check_options`); a set of fewer
    than ``min_images`` images, or with a mask that has no labelled pixel, is refused
    (:class:`~mesc.errors.CalibrationError`), one of fewer than ``warn_images`` gets a
    :class:`CalibrationWarning`. ``report`` and ``plot`` replace existing files only with
    ``force``; neither may overlap ``package`` or ``data`` (``write=True`` is the package's own
    locked manifest update). ``backend`` and ``device`` (those of :func:`mesc.load`) run the
    exits over the set."""
    from mesc.outputs import check_file_output
    from mesc.package import Package

    check_options(max_drop, max_cost, limit, th_img_steps, min_images, warn_images)
    if policy not in memo_mod.POLICIES:
        raise MescError(f"unknown policy {policy!r}; expected one of {', '.join(memo_mod.POLICIES)}")
    if write and policy != "mess":
        raise MescError(f"--write stores MESS thresholds (th_pix, th_img) for the runtime; the {policy} policy "
                        f"has no place in the package (calibrate it to compare, without --write)")
    inputs = [("PACKAGE", package if not isinstance(package, Package) else package.root), ("--data", data)]
    for option, path in (("--report", report), ("--plot", plot)):
        if path is not None:
            check_file_output(path, option, force, inputs=inputs)
    if cache is not None:
        memo_mod.check_cache(cache, inputs=inputs)
    if plot is not None:
        load_pyplot()
    pkg = Package.load(package)
    costs = costs_from_package(pkg, latency_key)
    check_image_count(len(memo_mod.calibration_pairs(data, limit, split)), data, min_images, warn_images)
    memo = memo_mod.evaluate(pkg, data, th_pix_grid=th_pix_grid, resize=resize, cache=cache, progress=progress,
                             limit=limit, split=split, backend=backend, device=device)
    # all_exits: a head at every exit point (with candidates, the search still picks which)
    subsets = architectures(costs.point, every_point=True) if all_exits else None

    def run(pol):
        s = Searcher(memo.inter, memo.union, memo.conf(pol), costs, exit_names=memo.exits,
                     th_pix_grid=memo.th_pix_grid if pol == "mess" else None, policy=pol,
                     th_img_steps=th_img_steps)
        bound = parse_max_cost(max_cost, s.reference().expected_cost)
        bar = (lambda it: iterate(it, f"calibrate: search ({pol})", "subset")) if progress else None
        return s.search(max_drop=max_drop, max_cost=bound, subsets=subsets, progress=bar)

    result = run(policy)   # InfeasibleBound propagates with the best achievable in its message
    compare = {}
    if compare_policies:
        for pol in memo_mod.POLICIES:
            if pol != policy:
                try:
                    compare[pol] = run(pol)
                except InfeasibleBound as err:
                    compare[pol] = err.result
    rep = build_report(pkg, data, memo, costs, result, policy, compare)
    if write:
        if rep["takes_all"]:
            warnings.warn(f"the thresholds written make {rep['takes_all']} take every image that reaches it, so the "
                          "exits after it never run (see the report's note)", CalibrationWarning, stacklevel=2)
        write_configuration(pkg, result.best, rep, depends_on=costs.manifest_dependencies())
        rep["written"] = True
    if report is not None:
        from mesc.staging import write_json_atomic

        write_json_atomic(report, rep)
    if plot is not None:
        plot_pareto(result, plot, compare=compare, title=f"{Path(str(pkg.root)).name}: {memo.n} images, "
                                                         f"policy {policy}",
                    exit_names=memo.exits if costs.has_candidates else None)
    return Calibration(result, memo, costs, rep, compare)


__all__ = ["Calibration", "CalibrationWarning", "MIN_IMAGES", "WARN_IMAGES", "calibrate", "check_image_count",
           "check_options", "parse_max_cost"]
