"""``mesc calibrate --risk``, measured: how often the bound is overshot on new images, and at what latency.

    python -m mesc.benchmarks.risk [--scenes 1000] [--calib 400,600] [--splits 30] [--delta 0.1]
        [--bounds 0.5,1] [--model demo | demo-search --weights FILE] [--work DIR] [--json OUT]

The demo model is exported with the policy at the exits' native resolution, its segments are
timed and recorded (``mesc bench --record``: the costs are these latencies), ``--scenes``
synthetic scenes are written (seed 21) and every exit runs once over them (the memo). The memo
is per image, so each of ``--splits`` random calibration/test splits costs no network run: per
split, calibration size and bound, plain calibration and ``--risk DELTA`` choose on the
calibration part and are assessed on the rest. Reported per calibration size and bound: the
fraction of splits whose test mIoU drop exceeds the bound (plain and risk-controlled), the mean
expected latency on the test part (the MESS cost model on the recorded latencies, ms), the
latency given up for the guarantee, and how far the test-set drop lies above the mean per-image
loss the guarantee is about (the empirical side of the control).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SCENE_SEED = 21


def prepare(work: Path, scenes: int, say=print, model: str = "demo", weights=None):
    """The ``model`` package (default the demo; ``demo-search`` with ``weights``: the candidate
    heads, for the exit-architecture search) with latencies recorded, ``scenes`` synthetic scenes
    and their memo, in ``work`` (reused where already there)."""
    from mesc.benchmarks.bench import BenchOptions, bench, record_latency
    from mesc.calibration.exits.memo import evaluate
    from mesc.datasets.synthetic import generate

    package, data = work / model, work / f"scenes-{scenes}"
    if not package.exists():
        from mesc.exporters.export import ExportOptions, export

        say(f"export {model} (policy at native resolution), bench --record")
        export(model, package, weights=weights, options=ExportOptions(policy_at="native", verify=False))
        record_latency(package, bench(package, BenchOptions(warmup=3, iters=30, baselines=()), progress=False,
                                      say=lambda m: None))
    if not data.exists():
        say(f"synth-data --count {scenes} --seed {SCENE_SEED}")
        generate(data, scenes, seed=SCENE_SEED)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the package has a static batch")
        memo = evaluate(package, data, cache=work / f"memo-{model}-{scenes}.npz")
    return package, memo


def _drop_pp(searcher, cfg) -> tuple[float, float]:
    """(test-set mIoU drop in pp, expected cost) of ``cfg`` on ``searcher``'s images."""
    held = searcher.assess(cfg)
    return 100 * (searcher.reference().miou - held.miou), held.expected_cost


def measure(memo, costs, calib_sizes, bounds, splits: int, delta: float, say=print) -> dict:
    from mesc.calibration.exits.risk import LossScale, control_risk, exits_taken
    from mesc.calibration.exits.search import Searcher
    from mesc.errors import CalibrationError

    conf = memo.conf("mess")

    def searcher(rows):
        return Searcher(memo.inter[rows], memo.union[rows], conf[rows], costs, exit_names=memo.exits,
                        th_pix_grid=memo.th_pix_grid)

    cases = []
    for n_cal in calib_sizes:
        for bound in bounds:
            case = {"calib": n_cal, "test": memo.n - n_cal, "max_drop_pp": bound, "delta": delta, "splits": []}
            cases.append(case)
            t0 = time.perf_counter()
            for s in range(splits):
                perm = np.random.default_rng([SCENE_SEED, s]).permutation(memo.n)
                cal, test = perm[:n_cal], perm[n_cal:]
                s_cal, s_test = searcher(cal), searcher(test)
                plain = s_cal.search(max_drop=bound).best
                try:
                    rc = control_risk(memo.inter[cal], memo.union[cal], conf[cal], costs, bound, delta,
                                      exit_names=memo.exits, th_pix_grid=memo.th_pix_grid, seed=s)
                except CalibrationError as err:  # too few images: recorded once, as the command says it
                    case["refused"] = str(err)
                    break
                p_drop, p_cost = _drop_pp(s_test, plain)
                r_drop, r_cost = _drop_pp(s_test, rc.chosen)
                # the loss the guarantee is about, on the test part, in the scale of the calibration part
                scale = LossScale.fit(memo.inter[cal], memo.union[cal])
                loss = scale.losses(s_test.inter, s_test.union, exits_taken(*s_test.decisions(rc.chosen)))
                case["splits"].append({
                    "plain": {"exits": plain.exits, "drop_pp": p_drop, "cost": p_cost},
                    "risk": {"exits": rc.chosen.exits, "drop_pp": r_drop, "cost": r_cost, "passed": rc.passed,
                             "order": len(rc.order), "mean_loss_pp": 100 * float(loss.mean()),
                             "final_only": rc.chosen.exits == [memo.exits[-1]]},
                    "final_only_cost": s_test.reference().expected_cost})
            done = case["splits"]
            if done:
                ref = float(np.mean([x["final_only_cost"] for x in done]))
                summary = {"final_only_ms": ref}
                for kind in ("plain", "risk"):
                    drops = np.array([x[kind]["drop_pp"] for x in done])
                    cost = float(np.mean([x[kind]["cost"] for x in done]))
                    summary[kind] = {"exceed_fraction": float((drops > bound).mean()), "mean_drop_pp": float(drops.mean()),
                                     "max_drop_pp": float(drops.max()), "mean_ms": cost, "ratio": cost / ref}
                summary["risk"]["final_only_fraction"] = float(np.mean([x["risk"]["final_only"] for x in done]))
                summary["given_up_ms"] = summary["risk"]["mean_ms"] - summary["plain"]["mean_ms"]
                summary["drop_minus_loss_pp_max"] = float(max(x["risk"]["drop_pp"] - x["risk"]["mean_loss_pp"]
                                                              for x in done))
                case["summary"] = summary
            case["seconds"] = time.perf_counter() - t0
            say(format_case(case))
    return {"benchmark": "risk", "cases": cases}


def format_case(case: dict) -> str:
    head = f"calib {case['calib']}, test {case['test']}, <= {case['max_drop_pp']} pp, DELTA {case['delta']}"
    if "summary" not in case:
        return f"{head}: refused: {case.get('refused')}"
    s = case["summary"]
    p, r = s["plain"], s["risk"]
    return (f"{head}, {len(case['splits'])} splits: exceeding plain {100 * p['exceed_fraction']:.0f} % / risk "
            f"{100 * r['exceed_fraction']:.0f} %; mean latency plain {p['mean_ms']:.2f} ms ({p['ratio']:.2f}x) / risk "
            f"{r['mean_ms']:.2f} ms ({r['ratio']:.2f}x), given up {s['given_up_ms']:+.2f} ms; risk final-only in "
            f"{100 * r['final_only_fraction']:.0f} % of splits; max test drop plain {p['max_drop_pp']:.2f} / risk "
            f"{r['max_drop_pp']:.2f} pp")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.risk", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=1000, help="Synthetic scenes in all (seed 21).")
    ap.add_argument("--calib", default="400,600", help="Calibration set sizes, comma-separated; the rest is the test set.")
    ap.add_argument("--splits", type=int, default=30, help="Random calibration/test splits per size and bound.")
    ap.add_argument("--delta", type=float, default=0.1, help="--risk DELTA.")
    ap.add_argument("--bounds", default="0.5,1", help="mIoU drop bounds in pp, comma-separated.")
    ap.add_argument("--model", default="demo", help="Registered model (demo-search: the demo with candidate heads).")
    ap.add_argument("--weights", type=Path, default=None, help="Checkpoint for --model (e.g. trained candidates).")
    ap.add_argument("--work", type=Path, default=None, help="Keep package, scenes and memo here (default: a temporary folder).")
    ap.add_argument("--json", type=Path, default=None, help="Write the result here (RESULTS.md beside it is regenerated).")
    args = ap.parse_args(argv)
    calib = [int(v) for v in args.calib.split(",")]
    bounds = [float(v) for v in args.bounds.split(",")]
    if min(args.scenes - c for c in calib) < 200:
        ap.error(f"every test set needs at least 200 scenes: --scenes {args.scenes} with --calib {args.calib}")

    from mesc.benchmarks.harness import environment
    from mesc.calibration.exits.search import costs_from_package
    from mesc.package import Package
    from mesc.timestamps import utc_now

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mesc-risk-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        package, memo = prepare(work, args.scenes, model=args.model, weights=args.weights)
        costs = costs_from_package(Package.load(package))
        result = measure(memo, costs, calib, bounds, args.splits, args.delta)
    result.update(scenario=f"risk-{args.model}-cpu", model=args.model, date=utc_now(), wall_seconds=time.perf_counter() - t0,
                  scenes=args.scenes, splits=args.splits, delta=args.delta, environment=environment("cpu"),
                  cost_unit=costs.unit)
    if args.json:
        from mesc.benchmarks.results_md import rewrite_results_md
        from mesc.package.staging import write_json_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, result)
        rewrite_results_md(args.json.parent)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
