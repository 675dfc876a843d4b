"""``mesc calibrate``: memo -> search -> report (text, JSON, Pareto plot) -> manifest.

:func:`calibrate` is what the command calls and what a library user calls::

    from mesc.calibration.exits import calibrate
    out = calibrate("pkg", "calib_data/", max_drop=1.0, report="calib.json", plot="pareto.png", write=True)
    out.result.best            # the chosen Configuration

``write=True`` stores the chosen thresholds in the package manifest
(:mod:`mesc.calibration.exits.manifest` says how dropped exits are marked).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from mesc.calibration.exits import memo as memo_mod
from mesc.calibration.exits.decision import DEFAULT_MARGIN, learned_scores, train_exit_nets
from mesc.calibration.exits.manifest import write_configuration
from mesc.calibration.exits.report import build_report, load_pyplot, plot_pareto
from mesc.calibration.exits.risk import check_risk, check_risk_images, control_risk
from mesc.calibration.exits.search import InfeasibleBound, Searcher, architectures, costs_from_package
from mesc.errors import CalibrationError, MescError
from mesc.policy import POLICY_KINDS, get_kind
from mesc.progress import iterate


@dataclass
class Calibration:
    result: object      # search.SearchResult
    memo: object        # memo.Memo
    costs: object       # search.Costs
    report: dict
    compare: dict       # other policy -> SearchResult (with compare_policies)
    nets: dict = None   # the learned policy's decision network per exit name (policy "learned")
    risk: object = None  # risk.RiskControl (with risk); result.best is then its choice


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
                  warn_images: int = WARN_IMAGES, risk=None) -> None:
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
    check_risk(risk, max_cost)
    if risk is not None and not max_drop > 0:
        raise CalibrationError(f"--risk {risk:g} with --max-drop {max_drop:g}: only the final exit alone can be "
                               "guaranteed a drop of 0; give a positive --max-drop")


def check_policy_name(policy) -> str:
    """The calibrated policy's name (``mean-entropy`` spelt either way), or the error listing them."""
    name = policy.replace("-", "_") if isinstance(policy, str) else policy
    if name not in POLICY_KINDS:
        raise CalibrationError(f"--policy must be one of {', '.join(POLICY_KINDS)}, got {policy!r}")
    return name


def check_image_count(n: int, data, min_images: int = MIN_IMAGES, warn_images: int = WARN_IMAGES) -> None:
    """Refuse fewer than ``min_images`` calibration images; warn under ``warn_images``."""
    if n < min_images:
        raise CalibrationError(f"calibrate needs at least {min_images} labelled images (--min-images), got {n} "
                               f"from {data}; thresholds deserve trust from about {warn_images} on")
    if n < warn_images:
        warnings.warn(f"thresholds chosen on {n} images will overfit; use at least {warn_images}",
                      CalibrationWarning, stacklevel=3)


def build_memo(package, data, cache, shard=None, resize: bool = False, th_pix_grid=None, limit=None,
               split: str | None = None, backend: str = "onnxruntime", device="cpu", progress: bool = False):
    """The memo pass alone (``mesc calibrate --memo-only``): every exit over the calibration set,
    or over shard ``(I, N)`` of it, written to ``cache`` (a shard beside it: see
    :mod:`~mesc.calibration.exits.memo_shards`). Torch-free, as the runtime is; no search."""
    if cache is None:
        raise CalibrationError("--memo-only writes the memo to --cache: give --cache FILE.npz")
    if limit is not None:
        _need_int(limit, 1, "--limit")
    inputs = [("PACKAGE", package), ("--data", data)]
    memo_mod.check_cache(cache, inputs=inputs)
    return memo_mod.evaluate(package, data, th_pix_grid=th_pix_grid, resize=resize, cache=cache, progress=progress,
                             limit=limit, split=split, backend=backend, device=device, shard=shard)


def calibrate(package, data, max_drop=None, max_cost=None, policy: str = "mess", report=None, plot=None,
              write: bool = False, resize: bool = False, cache=None, latency_key=None, all_exits: bool = False,
              th_pix_grid=None, th_img_steps: int = 50, limit=None, compare_policies: bool = False,
              progress: bool = False, min_images: int = MIN_IMAGES, warn_images: int = WARN_IMAGES,
              force: bool = False, split: str | None = None, backend: str = "onnxruntime",
              device="cpu", risk: float | None = None, prune: bool = True) -> Calibration:
    """Every option is checked before an image is read (:func:`check_options`); a set of fewer
    than ``min_images`` images, or with a mask that has no labelled pixel, is refused
    (:class:`~mesc.errors.CalibrationError`), one of fewer than ``warn_images`` gets a
    :class:`CalibrationWarning`. ``report`` and ``plot`` replace existing files only with
    ``force``; neither may overlap ``package`` or ``data`` (``write=True`` is the package's own
    locked manifest update). ``backend`` and ``device`` (those of :func:`mesc.load`) run the
    exits over the set. ``risk`` (DELTA, with ``max_drop``) chooses with the Learn-then-Test
    guarantee of :mod:`mesc.calibration.exits.risk`; too few images for it are refused before
    any exit runs, and the report's ``"risk"`` entry records the test and the plain choice.
    ``prune=False`` searches every architecture in full (:mod:`~mesc.calibration.exits.search_space`:
    the same choice, slower; the report then gives every architecture's best)."""
    from mesc.package.outputs import check_file_output
    from mesc.package import Package

    check_options(max_drop, max_cost, limit, th_img_steps, min_images, warn_images, risk)
    policy = check_policy_name(policy)
    if risk is not None and get_kind(policy).trained:
        raise CalibrationError(f"--risk with --policy {policy}: the decision network is trained on the calibration "
                               "images, so they cannot also test its thresholds; choose another policy for --risk")
    inputs = [("PACKAGE", package if not isinstance(package, Package) else package.root), ("--data", data)]
    for option, path in (("--report", report), ("--plot", plot)):
        if path is not None:
            check_file_output(path, option, force, inputs=inputs)
    if cache is not None:
        memo_mod.check_cache(cache, inputs=inputs)
    if plot is not None:
        load_pyplot()
    pkg = Package.load(package)
    if write:  # a package that cannot take the policy is refused before the images run
        from mesc.exporters.policy.compile import check_compilable

        check_compilable(pkg, policy)
    costs = costs_from_package(pkg, latency_key)
    n_images = len(memo_mod.calibration_pairs(data, limit, split))
    check_image_count(n_images, data, min_images, warn_images)
    if risk is not None:
        check_risk_images(n_images, max_drop, risk)
    memo = memo_mod.evaluate(pkg, data, th_pix_grid=th_pix_grid, resize=resize, cache=cache, progress=progress,
                             limit=limit, split=split, backend=backend, device=device)
    # all_exits: a head at every exit point (with candidates, the search still picks which)
    subsets = architectures(costs.point, every_point=True) if all_exits else None

    nets = {}

    def scores(pol):
        if not get_kind(pol).trained:
            return memo.conf(pol)
        if not nets:
            margin = DEFAULT_MARGIN if max_drop is None else max_drop / 100.0
            nets.update(train_exit_nets(memo, margin))
        return learned_scores(memo, nets)

    def run(pol):
        conf = scores(pol)
        s = Searcher(memo.inter, memo.union, conf, costs, exit_names=memo.exits,
                     th_pix_grid=memo.th_pix_grid if get_kind(pol).pixel_threshold else None, policy=pol,
                     th_img_steps=th_img_steps)
        bound = parse_max_cost(max_cost, s.reference().expected_cost)
        bar = (lambda it: iterate(it, f"calibrate: search ({pol})", "subset")) if progress else None
        return s.search(max_drop=max_drop, max_cost=bound, subsets=subsets, progress=bar, prune=prune)

    result = run(policy)   # InfeasibleBound propagates with the best achievable in its message
    compare = {}
    if compare_policies:
        for pol in POLICY_KINDS:
            if pol != policy:
                try:
                    compare[pol] = run(pol)
                except InfeasibleBound as err:
                    compare[pol] = err.result
    risk_control = None
    if risk is not None:
        plain = result.best
        risk_control = control_risk(memo.inter, memo.union, scores(policy), costs, max_drop, risk,
                                    exit_names=memo.exits,
                                    th_pix_grid=memo.th_pix_grid if get_kind(policy).pixel_threshold else None,
                                    policy=policy, th_img_steps=th_img_steps, subsets=subsets)
        result = dataclasses.replace(result, best=risk_control.chosen)
    rep = build_report(pkg, data, memo, costs, result, policy, compare, risk=risk)
    if rep["selection"]["warning"]:
        warnings.warn(rep["selection"]["warning"], CalibrationWarning, stacklevel=2)
    if risk_control is not None:
        rep["risk"] = dict(risk_control.to_dict(), plain=plain.to_dict(),
                           cost_given_up=risk_control.chosen.expected_cost - plain.expected_cost)
    if write:
        if rep["takes_all"]:
            warnings.warn(f"the thresholds written make {rep['takes_all']} take every image that reaches it, so the "
                          "exits after it never run (see the report's note)", CalibrationWarning, stacklevel=2)
        write_configuration(pkg, result.best, rep, depends_on=costs.manifest_dependencies(),
                            nets=nets if get_kind(policy).trained else None)
        rep["written"] = True
    if report is not None:
        from mesc.package.staging import write_json_atomic

        write_json_atomic(report, rep)
    if plot is not None:
        plot_pareto(result, plot, compare=compare, title=f"{Path(str(pkg.root)).name}: {memo.n} images, "
                                                         f"policy {policy}",
                    exit_names=memo.exits if costs.has_candidates else None)
    return Calibration(result, memo, costs, rep, compare, nets if nets else None, risk_control)


__all__ = ["Calibration", "CalibrationWarning", "MIN_IMAGES", "WARN_IMAGES", "build_memo", "calibrate", "check_image_count",
           "check_options", "parse_max_cost"]
