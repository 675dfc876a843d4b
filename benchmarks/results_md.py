"""``benchmarks/results/RESULTS.md``, written from every recorded JSON beside it: a section per
bench scenario (:mod:`mesc.benchmarks.scenarios`), per ``--risk`` run
(:mod:`mesc.benchmarks.risk`) and per serve-load run (:mod:`mesc.benchmarks.serve_scenario`).
Rendering only: the benchmarks that record a result import this module, never each other."""

from __future__ import annotations

import json
from pathlib import Path


def _f(v, fmt=".1f"):
    return "-" if v is None else format(v, fmt)


def markdown(recorded: list[dict]) -> str:
    """RESULTS.md: per scenario the machine, a summary per model and per-exit figures."""
    lines = ["# Recorded benchmark results", "",
             "Written by `python -m mesc.benchmarks` (`make bench`) from the `bench_*.json`, `serve_load_*.json` "
             "and `risk_*.json` files beside it; "
             "latencies in ms (median over the timed rounds), `mesc bench` semantics (see "
             "`benchmarks/bench.py`). Decision = host copy of the exit's confidence after its head.", ""]
    for res in recorded:
        if res.get("benchmark") == "risk":
            lines += risk_section(res)
            continue
        if res.get("benchmark") == "serve_load":
            lines += serve_section(res)
            continue
        m = res["machine"]
        lines += [f"## {res['scenario']}", "", res["about"] + ".", "",
                  f"Machine: {m['device']} ({m['cpu_cores']} cores, {m['threads']} threads), "
                  + (f"CUDA driver {m.get('cuda_driver')}, TensorRT {m.get('tensorrt')}, " if "cuda_driver" in m else "")
                  + f"ONNX Runtime {m['onnxruntime']}, torch {m['torch']}, Python {m['python']}, {m['os']}. "
                  f"{res['settings']['warmup']} warm-up + {res['settings']['iters']} timed rounds; "
                  f"recorded {res['date']} in {res['wall_seconds']:.0f} s.", "",
                  "| model | input | final exit | monolithic | chain/mono | never-exit | eager | eager/mesc |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["runs"]:
            b = r["baselines"]
            mono, never, eager = (b.get(k, {}).get("ms", {}).get("median") for k in ("monolithic", "never_exit", "eager"))
            lines.append(f"| {r['model']} | {'x'.join(map(str, r['input_shape']))} {r['precision']} | "
                         f"{_f(r['exits'][-1]['ms']['median'])} | {_f(mono)} | "
                         f"{_f(b.get('monolithic', {}).get('chain_over_mono'), '.3f')} | {_f(never)} | {_f(eager)} | "
                         f"{_f(b.get('eager', {}).get('eager_over_mesc'), '.2f')} |")
        lines += ["", "Per exit (budgeted: reach and take exit k): median, p90, latency efficiency "
                  "(latency share / FLOPs share of the final exit), decision cost and its share of the head.", "",
                  "| model | exit | GFLOPs | median | p90 | sum of segments | efficiency | decision | % of head |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["runs"]:
            for e in r["exits"]:
                d = e["decision"]
                lines.append(f"| {r['model']} | {e['name']} | {e['flops'] / 1e9:.2f} | {e['ms']['median']:.1f} | "
                             f"{e['ms']['p90']:.1f} | {e['segment_sum_ms']:.1f} | {_f(e['efficiency'], '.2f')} | "
                             f"{d['ms']['median']:.3f} | {100 * d['share_of_head']:.2f} |")
        data = [r for r in res["runs"] if r.get("data")]
        if data:
            lines += ["", "Input-dependent over images (package's default thresholds), per image:", "",
                      "| model | images | exit shares | mean | p99 | final-only mean | speed-up |",
                      "|---|---:|---|---:|---:|---:|---:|"]
            for r in data:
                d = r["data"]
                shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in d["exit_fraction"].items())
                lines.append(f"| {r['model']} | {d['images']} | {shares} | {d['input_dependent_ms']['mean']:.2f} | "
                             f"{d['input_dependent_ms']['p99']:.2f} | {d['final_only_ms']['mean']:.2f} | "
                             f"{d['speedup_mean']:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def risk_section(res: dict) -> list[str]:
    """RESULTS.md's section for a recorded ``risk_*.json`` (:mod:`mesc.benchmarks.risk`)."""
    m = res["environment"]
    lines = [f"## {res['scenario']}", "",
             f"`mesc calibrate --risk {res['delta']}` against plain calibration on the demo model, over "
             f"{res['splits']} random calibration/test splits of {res['scenes']} synthetic scenes (one memo; the "
             "latencies are the MESS expected cost on the recorded per-segment medians). `python -m "
             "mesc.benchmarks.risk`.", "",
             f"Machine: {m['cpu']} ({m['cpu_cores']} cores), ONNX Runtime {m['onnxruntime']}, numpy {m['numpy']}, "
             f"Python {m['python']}; recorded {res['date']} in {res['wall_seconds']:.0f} s.", "",
             "| calib / test | bound | exceeding: plain | risk | mean latency: final only | plain | risk | "
             "given up | risk = final only | max test drop: plain | risk |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in res["cases"]:
        if "summary" not in c:
            lines.append(f"| {c['calib']} / {c['test']} | {c['max_drop_pp']} pp | refused: too few images | | | | | "
                         "| | | |")
            continue
        s = c["summary"]
        p, r = s["plain"], s["risk"]
        lines.append(f"| {c['calib']} / {c['test']} | {c['max_drop_pp']} pp | {100 * p['exceed_fraction']:.0f} % | "
                     f"{100 * r['exceed_fraction']:.0f} % | {s['final_only_ms']:.2f} ms | {p['mean_ms']:.2f} ms "
                     f"({p['ratio']:.2f}x) | {r['mean_ms']:.2f} ms ({r['ratio']:.2f}x) | {s['given_up_ms']:+.2f} ms | "
                     f"{100 * r['final_only_fraction']:.0f} % | {p['max_drop_pp']:.2f} pp | {r['max_drop_pp']:.2f} pp |")
    lines.append("")
    return lines


def serve_section(res: dict) -> list[str]:
    """RESULTS.md's section for one recorded serve-load run (:mod:`mesc.benchmarks.serve_scenario`)."""
    m, load = res["machine"], res.get("load_average", {})
    shared = (f" Load average {load['before']} before, {load['after']} after on {m['cpu_cores']} cores: the "
              "machine was shared, so absolute figures are pessimistic." if load and
              max(load.values()) > m["cpu_cores"] else "")
    lines = [f"## {res['scenario']}", "", res["about"] + ".", "",
             f"Machine: {m['device']} ({m['cpu_cores']} cores), ONNX Runtime {m['onnxruntime']} CPU, "
             f"numpy {m['numpy']}, Python {m['python']}. Server: {res['server']}. Package: {res['package']}; "
             f"recorded {res['recorded']} in {res['wall_seconds']:.0f} s.{shared}", "",
             "| exits | clients | requests | img/s | p50 ms | p99 ms | mean served batch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['throughput_ips']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['mean_batch']:.2f} |" for r in res["runs"]]
    return lines + [""]


def rewrite_results_md(out: Path) -> None:
    """RESULTS.md in ``out`` from every recorded JSON there."""
    recorded = [json.loads(p.read_text()) for pattern in ("bench_*.json", "serve_load_*.json", "risk_*.json")
                for p in sorted(out.glob(pattern))]
    (out / "RESULTS.md").write_text(markdown(recorded))
