"""``mesc calibrate``: memo -> search -> report (text, JSON, Pareto plot) -> manifest.

:func:`calibrate` is what the command calls and what a library user calls::

    from mesc.calibration.exits import calibrate
    out = calibrate("pkg", "calib_data/", max_drop=1.0, report="calib.json", plot="pareto.png", write=True)
    out.result.best            # the chosen Configuration

``write=True`` stores the chosen thresholds in the package manifest
(:mod:`mesc.calibration.exits.manifest` says how dropped exits are marked).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesc.calibration.exits import memo as memo_mod
from mesc.calibration.exits.manifest import write_configuration
from mesc.calibration.exits.report import build_report, load_pyplot, plot_pareto
from mesc.calibration.exits.search import InfeasibleBound, Searcher, costs_from_package
from mesc.errors import MescError
from mesc.progress import iterate


@dataclass
class Calibration:
    result: object      # search.SearchResult
    memo: object        # memo.Memo
    costs: object       # search.Costs
    report: dict
    compare: dict       # other policy -> SearchResult (with compare_policies)


def parse_max_cost(value, reference_cost: float) -> float:
    """A cost bound: a number in the cost unit, or ``N%`` of the final-only cost."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0 * reference_cost
        return float(text)
    except ValueError:
        raise MescError(f"--max-cost: expected a number or a percentage of the final-only cost "
                        f"(e.g. 12.5 or 60%), got {value!r}") from None


def calibrate(package, data, max_drop=None, max_cost=None, policy: str = "mess", report=None, plot=None,
              write: bool = False, resize: bool = False, cache=None, latency_key=None, all_exits: bool = False,
              th_pix_grid=None, th_img_steps: int = 50, limit=None, compare_policies: bool = False,
              progress: bool = False, force: bool = False) -> Calibration:
    """``report`` and ``plot`` replace existing files only with ``force``; neither may overlap
    ``package`` or ``data`` (``write=True`` is the package's own locked manifest update)."""
    from mesc.outputs import check_file_output
    from mesc.package import Package

    if (max_drop is None) == (max_cost is None):
        raise MescError("give exactly one bound: --max-drop PP (mIoU drop vs the final exit) or --max-cost COST")
    if policy not in memo_mod.POLICIES:
        raise MescError(f"unknown policy {policy!r}; expected one of {', '.join(memo_mod.POLICIES)}")
    if write and policy != "mess":
        raise MescError(f"--write stores MESS thresholds (th_pix, th_img) for the runtime; the {policy} policy "
                        f"has no place in the package (calibrate it to compare, without --write)")
    inputs = [("PACKAGE", package if not isinstance(package, Package) else package.root), ("--data", data)]
    for option, path in (("--report", report), ("--plot", plot)):
        if path is not None:
            check_file_output(path, option, force, inputs=inputs)
    if plot is not None:
        load_pyplot()
    pkg = Package.load(package)
    costs = costs_from_package(pkg, latency_key)
    memo = memo_mod.evaluate(pkg, data, th_pix_grid=th_pix_grid, resize=resize, cache=cache, progress=progress,
                             limit=limit)
    last = len(memo.exits) - 1
    subsets = [tuple(range(last + 1))] if all_exits else None

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
        write_configuration(pkg, result.best, rep)
        rep["written"] = True
    if report is not None:
        from mesc.package import write_json_atomic

        write_json_atomic(report, rep)
    if plot is not None:
        plot_pareto(result, plot, compare=compare, title=f"{Path(str(pkg.root)).name}: {memo.n} images, "
                                                         f"policy {policy}")
    return Calibration(result, memo, costs, rep, compare)


__all__ = ["Calibration", "calibrate", "parse_max_cost"]
