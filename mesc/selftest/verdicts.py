"""The checks of a self-test (one PASS/FAIL line each, with its bar) and the printed report."""

from __future__ import annotations

from mesc.selftest.environment import format_environment
from mesc.selftest.tolerances import Bars


def _check(name: str, value, op: str, bar: float, note: str = "") -> dict:
    passed = value is not None and (value >= bar if op == ">=" else value <= bar)
    return {"name": name, "value": value, "op": op, "bar": bar, "passed": bool(passed), "note": note}


def checks(exits: dict, decisions: dict, bars: Bars) -> list[dict]:
    out = []
    for name, e in exits.items():
        out.append(_check(f"{name} label agreement", e["agreement"], ">=", bars.agreement))
        out.append(_check(f"{name} logit error / scale", e["rel_logit_err"], "<=", bars.logit_err))
        if e["max_confidence_err"] is not None:
            out.append(_check(f"{name} confidence error", e["max_confidence_err"], "<=", bars.confidence_err))
    unexplained = sum(1 for d in decisions["differ"] if not d["borderline"])
    borderline = len(decisions["differ"]) - unexplained
    out.append(_check("exit decisions differing (not borderline)", unexplained, "<=", 0,
                      f"{decisions['same']}/{decisions['images']} images at the same exit, {borderline} borderline "
                      f"(reference c_img within {bars.confidence_err} of th_img)"))
    return out


def verdict_line(c: dict) -> str:
    value = c["value"] if isinstance(c["value"], int) else f"{c['value']:.4g}"
    note = f"  ({c['note']})" if c["note"] else ""
    return f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']} {value} {c['op']} {c['bar']:g}{note}"


def format_report(report: dict) -> str:
    r = report["request"]
    lines = [f"mesc selftest: {r['backend']} on {r['device']}, {r['precision']}, target {r['target']}, "
             f"against ONNX Runtime CPU FP32",
             f"package {report['package']['root']}" + (" (the demo model, exported here)" if r["demo"] else ""),
             "environment", *format_environment(report["environment"])]
    if report.get("build"):
        b = report["build"]
        lines.append(f"built {len(b['segments'])} engines in {b['dir']} (TensorRT {b['trt_version']})")
    path = report.get("runtime_path")
    if path:
        fell = "; ".join(f"{k}: {v}" for k, v in path["graph_fallbacks"].items())
        lines.append(f"runtime path: {path['backend']}, {path['io']} I/O, CUDA graphs {path['cuda_graphs']}"
                     + (f" (uncaptured: {fell})" if fell else ""))
    img = report["images"]
    lines.append(f"segments (median of {report['timing_runs']} runs on {img['batch']} image(s); "
                 f"max |error| / scale of their outputs)")
    for name, s in report["segments"].items():
        ms = "not run" if s["ms"] is None else f"{s['ms']:.3f} ms"
        lines.append(f"  {name:12s} {ms:>12s}   {s['rel_err']:.3g}")
    for name, ms in report["decision_ms"].items():
        lines.append(f"  {name:12s} {ms:9.3f} ms")
    lines.append(f"exits ({img['count']} {img['source']})")
    for name, e in report["exits"].items():
        conf = "" if e["max_confidence_err"] is None else f"  confidence error {e['max_confidence_err']:.3g}"
        lines.append(f"  {name:12s} agreement {e['agreement']:.5f}  max |logit error| {e['max_abs_logit_err']:.3g} "
                     f"(scale {e['logit_scale']:.3g}){conf}")
    for d in report["decisions"]["differ"]:
        lines.append(f"  image {d['image']}: {d['exit']} instead of {d['reference_exit']} (at {d['at']}: c_img "
                     f"{d['confidence']} vs {d['reference_confidence']}, th_img {d['th_img']})")
    lines += [verdict_line(c) for c in report["checks"]]
    failed = sum(not c["passed"] for c in report["checks"])
    lines.append(f"selftest {'PASSED' if not failed else 'FAILED'}: {len(report['checks']) - failed} of "
                 f"{len(report['checks'])} checks passed")
    return "\n".join(lines)
