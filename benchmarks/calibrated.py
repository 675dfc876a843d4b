"""Calibrated early exit, measured by running it: what ``mesc calibrate`` promises, checked.

    python -m mesc.benchmarks.calibrated [--package DIR | --model NAME [--weights FILE]] [--calib 200]
        [--test 200] [--bounds 0.5,1,2] [--rounds 3] [--threads 2] [--json OUT]

Without ``--package`` the embedded demo model (or ``--model``, e.g. ``demo-search`` with its
trained candidate heads) is exported with the policy at the exits' native resolution. Where the
package offers candidate heads (MESS exit-architecture search), each bound is run twice: the
configuration the search chose over every architecture, and the best one with the fixed heads
(candidate 0 at every point, what an uncalibrated package runs). The package's segments are timed and recorded (``mesc bench --record``), the exits
and thresholds are chosen on a labelled synthetic calibration split for each mIoU bound
(``mesc calibrate --max-drop``), and each configuration then segments a separate synthetic test
split through the runtime, one image per call, beside the final exit alone. Reported per
configuration: mean latency per image over the test split (every round, and the median round),
its ratio to final-only, the exit distribution, and the mIoU drop on the test split, measured
from the labels the runtime returned, next to what the calibration set predicted. Each round
runs every image through every configuration in turn (the order rotating from image to image),
so that load on the machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment
from mesc.benchmarks.shared import input_size, run_and_score
from mesc.evaluation.metrics import class_counts, miou

CALIB_SEED, TEST_SEED = 11, 12


def _configure(pipe, cfg) -> None:
    """Apply a calibration Configuration to a live pipeline (what ``--write`` stores)."""
    from mesc.calibration.exits.manifest import exit_settings

    for name, th in exit_settings(cfg, pipe.exit_names).items():
        pipe.set_enabled(name, th is not None)
        if th is not None:
            pipe.set_thresholds(name, **th)


def _interleaved(pipe, setups: dict, images, masks, num_classes: int, final: str, shift: int = 0) -> dict:
    """One round: each image through every setup (None: the final exit alone, else a calibration
    Configuration) in turn, the order rotating from image to image, so that a slow spell of the
    machine falls on every setup alike rather than on whichever ran then. Per setup, as
    :func:`~mesc.benchmarks.shared.run_and_score` gives it."""
    names = list(setups)
    inter = {n: np.zeros(num_classes) for n in names}
    union = {n: np.zeros(num_classes) for n in names}
    lat, exits = {n: [] for n in names}, {n: [] for n in names}
    for i, (img, mask) in enumerate(zip(images, masks)):
        k = (i + shift) % len(names)
        for n in names[k:] + names[:k]:
            if setups[n] is not None:
                _configure(pipe, setups[n])
            res = pipe([img], exit=final if setups[n] is None else None)[0]
            lat[n].append(res.timings["total_ms"])
            exits[n].append(res.exit)
            a, b = class_counts(res.labels, mask, num_classes)
            inter[n] += a
            union[n] += b
    return {n: {"latency_ms": lat[n], "exits": exits[n], "miou": float(miou(inter[n][None], union[n][None])[0])}
            for n in names}


def measure(package, calib_dir, test_dir, bounds, rounds: int, threads: int | None = None,
            say=print) -> dict:
    from mesc.calibration.exits.memo import evaluate, load_calibration_set
    from mesc.calibration.exits.search import InfeasibleBound, Searcher, costs_from_package
    from mesc.package import Package
    from mesc.runtime import load

    pkg = Package.load(package)
    costs = costs_from_package(pkg)
    with warnings.catch_warnings():
        # a batch-1 package, as deployed: the memo's image-by-image notice is expected here
        warnings.filterwarnings("ignore", message="the package has a static batch")
        memos = {split: evaluate(pkg, d) for split, d in (("calib", calib_dir), ("test", test_dir))}
    s_cal, s_test = (Searcher(m.inter, m.union, m.conf("mess"), costs, exit_names=m.exits,
                              th_pix_grid=m.th_pix_grid) for m in (memos["calib"], memos["test"]))
    configs, search = {}, {}
    for bound in bounds:
        t0 = time.perf_counter()
        try:
            res = s_cal.search(max_drop=bound)
        except InfeasibleBound as err:
            say(f"<= {bound} pp: {err}")
            continue
        seconds = time.perf_counter() - t0
        chosen = {"searched": res.best} if costs.has_candidates else {"": res.best}
        if costs.has_candidates and res.fixed_heads_best is not None and res.meets_bound(res.fixed_heads_best):
            chosen["fixed heads"] = res.fixed_heads_best
        for heads, cfg in chosen.items():
            key = (bound, heads)
            search[key], configs[key] = seconds, cfg
            say(f"<= {bound} pp{' ' + heads if heads else ''}: exits {cfg.exits}, predicted {cfg.expected_cost:.2f} "
                f"{cfg.unit} ({cfg.expected_cost / s_cal.reference().expected_cost:.2f}x), searched in {seconds:.2f} s")

    num_classes = max(ex.num_classes for ex in pkg.exits)
    test = load_calibration_set(test_dir, input_size(pkg), num_classes)
    images, masks = [t[1] for t in test], [t[2] for t in test]
    final = pkg.exits[-1].name
    label = {k: f"<= {k[0]} pp" + (f" {k[1]}" if k[1] else "") for k in configs}
    runs: dict = {"final-only": [], **{label[k]: [] for k in configs}}
    with load(package, backend="onnxruntime", device="cpu", threads=threads) as pipe:
        run_and_score(pipe, images[:8], masks[:8], num_classes, exit=final)  # warm-up: sessions, allocations
        for cfg in configs.values():
            _configure(pipe, cfg)
            run_and_score(pipe, images[:8], masks[:8], num_classes)
        setups = {"final-only": None, **{label[k]: cfg for k, cfg in configs.items()}}
        for r in range(rounds):
            for name, res in _interleaved(pipe, setups, images, masks, num_classes, final, r).items():
                runs[name].append(res)
            say(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {np.mean(v[-1]['latency_ms']):.2f} ms" for k, v in runs.items()))
        env = environment(pipe.runner.device, threads=threads)

    ref_rounds = [float(np.mean(x["latency_ms"])) for x in runs["final-only"]]
    ref_miou = runs["final-only"][0]["miou"]
    out = {"package": str(package), "environment": env, "images": {"calib": memos["calib"].n, "test": len(images)},
           "cost_unit": costs.unit, "rounds": rounds,
           "final_only": {"mean_ms_rounds": ref_rounds, "mean_ms": float(np.median(ref_rounds)),
                          "miou": ref_miou, "predicted_cost": s_cal.reference().expected_cost},
           "configurations": []}
    for (b, heads), cfg in configs.items():
        rr = runs[label[(b, heads)]]
        means = [float(np.mean(x["latency_ms"])) for x in rr]
        names = rr[0]["exits"]
        held = s_test.assess(cfg)
        measured_share = {e: names.count(e) / len(names) for e in cfg.exits}
        out["configurations"].append({
            "max_drop_pp": b, "heads": heads or None, "exits": cfg.exits, "th_pix": cfg.th_pix,
            "th_img": cfg.th_img, "search_seconds": search[(b, heads)],
            "predicted": {"cost": cfg.expected_cost, "ratio": cfg.expected_cost / s_cal.reference().expected_cost,
                          "drop_pp": 100 * (s_cal.reference().miou - cfg.miou), "exit_fraction": cfg.exit_fraction},
            "test_memo": {"ratio": held.expected_cost / s_test.reference().expected_cost, "miou": held.miou,
                          "drop_pp": 100 * (s_test.reference().miou - held.miou),
                          "exit_fraction": held.exit_fraction},
            "measured": {"mean_ms_rounds": means, "mean_ms": float(np.median(means)),
                         "ratio": float(np.median(means)) / out["final_only"]["mean_ms"],
                         "miou": rr[0]["miou"], "drop_pp": 100 * (ref_miou - rr[0]["miou"]),
                         "exit_fraction": measured_share},
        })
    return out


def search_scale(images: int = 500, exits: int = 4, grid: int = 20, th_img_steps: int = 50, classes: int = 19,
                 bounds=(0.5, 1.0), seed: int = 0) -> dict:
    """Search time at the scale the issue names, on a constructed memo: per image a difficulty
    that lowers every exit's IoU and confidence, less so for deeper exits."""
    from mesc.calibration.exits.search import Costs, Searcher

    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 1, images)
    depth = np.linspace(0.3, 1.0, exits)
    acc = np.clip(1 - d[:, None] * (1.2 - depth[None]) + rng.normal(0, 0.05, (images, exits)), 0.05, 1)
    area = rng.uniform(0.2, 1.0, (images, 1, classes)) * rng.random((images, 1, classes)) < 0.6
    union = np.broadcast_to(area * 1000.0, (images, exits, classes)).copy()
    inter = union * acc[:, :, None]
    th = np.linspace(0.5, 0.99, grid)
    conf = np.clip(acc[:, :, None] - 0.4 * th[None, None] + rng.normal(0, 0.03, (images, exits, grid)), 0, 1)
    costs = Costs(chunk=np.linspace(1, 3, exits), head=np.full(exits, 0.3), unit="ms", source="constructed")
    s = Searcher(inter, union, conf, costs, th_pix_grid=th, th_img_steps=th_img_steps)
    out = {"images": images, "exits": exits, "th_pix": grid, "th_img_steps": th_img_steps, "seconds": {}}
    for b in bounds:
        t0 = time.perf_counter()
        s.search(max_drop=b)
        out["seconds"][str(b)] = time.perf_counter() - t0
    return out


def format_table(result: dict) -> str:
    ref = result["final_only"]
    lines = [f"{result['images']['test']} test images, {result['rounds']} rounds; final only "
             f"{ref['mean_ms']:.2f} ms/image (rounds {', '.join(f'{v:.2f}' for v in ref['mean_ms_rounds'])}), "
             f"mIoU {100 * ref['miou']:.1f} %",
             "bound    exits                 mean ms  ratio  drop pp  exit shares (measured)       predicted ratio/drop  search s",
             "-" * 118]
    for c in result["configurations"]:
        m, p = c["measured"], c["predicted"]
        shares = ", ".join(f"{e} {100 * v:.0f}%" for e, v in m["exit_fraction"].items())
        lines.append(f"<= {c['max_drop_pp']:<5} {'+'.join(c['exits']):<21}"
                     + (f" ({c['heads']})" if c.get("heads") else "") + f" {m['mean_ms']:7.2f}  {m['ratio']:5.2f}  "
                     f"{m['drop_pp']:7.2f}  {shares:<28} {p['ratio']:5.2f} / {p['drop_pp']:5.2f}        "
                     f"{c['search_seconds']:.2f}")
    sc = result.get("search_scale")
    if sc:
        lines.append(f"search at scale ({sc['exits']} exits x {sc['th_pix']} th_pix x {sc['th_img_steps']} th_img, "
                     f"{sc['images']} images, constructed memo): "
                     + ", ".join(f"<= {b} pp {t:.2f} s" for b, t in sc["seconds"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.calibrated", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, default=None, help="A package (default: export --model).")
    ap.add_argument("--model", default="demo", help="Registered model to export without --package (default: demo; "
                                                    "demo-search: the demo with candidate heads).")
    ap.add_argument("--weights", type=Path, default=None, help="Checkpoint for --model (e.g. trained candidates).")
    ap.add_argument("--calib", type=int, default=200, help="Synthetic calibration scenes (seed 11).")
    ap.add_argument("--test", type=int, default=200, help="Synthetic test scenes (seed 12).")
    ap.add_argument("--bounds", default="0.5,1,2", help="mIoU drop bounds in pp, comma-separated.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per segment (bench record and runs).")
    ap.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = ap.parse_args(argv)
    bounds = [float(b) for b in args.bounds.split(",")]

    from mesc.benchmarks.bench import BenchOptions, bench, record_latency
    from mesc.datasets.synthetic import generate

    with tempfile.TemporaryDirectory(prefix="mesc-calibrated-") as tmp:
        tmp = Path(tmp)
        package = args.package
        if package is None:
            from mesc.exporters.export import ExportOptions, export

            package = tmp / args.model
            export(args.model, package, weights=args.weights, options=ExportOptions(policy_at="native", verify=False))
        from mesc.package import Package

        shape = input_size(Package.load(package))
        record_latency(package, bench(package, BenchOptions(warmup=3, iters=30, baselines=(), threads=args.threads),
                                      progress=False, say=lambda m: None))
        calib = generate(tmp / "calib", args.calib, seed=CALIB_SEED, size=shape)
        test = generate(tmp / "test", args.test, seed=TEST_SEED, size=shape)
        result = measure(package, calib, test, bounds, args.rounds, args.threads)
    result["search_scale"] = search_scale()
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
