"""Time and peak memory of the graph captures (torch.export against torch.fx) on reference models.

    python -m mesc.benchmarks.capture_cost [--models drn50-deeplab,hrnet18] [--shape 1x3x512x1024] [--json OUT]

Every figure comes from a fresh Python process, since peak RSS (``ru_maxrss``) only grows: one
process per model and capture times the capture alone (model built, weights in memory, then
``trace_model``), another the whole ``mesc export`` with that capture (verification included).
``rss_model_mb`` is the process after building the model, so the capture's own share is the
difference.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CAPTURES = ("export", "fx")


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _capture_only(name: str, shape, capture: str) -> dict:
    import torch

    from mesc.exporters.trace import trace_model
    from mesc.models import create

    model = create(name).eval()
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    rss_model = _rss_mb()
    t0 = time.perf_counter()
    traced = trace_model(model, example, capture=capture)
    return {"capture_seconds": round(time.perf_counter() - t0, 2), "rss_model_mb": rss_model,
            "rss_peak_capture_mb": _rss_mb(), "graph_nodes": len(traced.gm.graph.nodes)}


def _export(name: str, shape, capture: str) -> dict:
    from mesc.benchmarks.export_cost import measure

    r = measure(name, shape, capture=capture)
    return {"export_seconds": r["export_seconds"], "rss_peak_export_mb": _rss_mb(), "max_rel_err": r["max_rel_err"],
            "segments": [s["name"] for s in r["segments"]], "package_mb": r["package_mb"]}


def _child(kind: str, name: str, shape, capture: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "mesc.benchmarks.capture_cost", "--child", kind, name, capture,
                          "x".join(map(str, shape))], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="drn50-deeplab,hrnet18")
    ap.add_argument("--shape", default="1x3x512x1024")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=4, metavar=("KIND", "MODEL", "CAPTURE", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, name, capture, shape = args.child
        shape = tuple(int(d) for d in shape.split("x"))
        print(json.dumps((_capture_only if kind == "capture" else _export)(name, shape, capture)))
        return
    shape = tuple(int(d) for d in args.shape.split("x"))
    from mesc.benchmarks.harness import environment

    results = {"machine": environment("cpu"), "input_shape": list(shape), "runs": []}
    for name in args.models.split(","):
        for capture in CAPTURES:
            r = {"model": name, "capture": capture, **_child("capture", name, shape, capture),
                 **_child("export", name, shape, capture)}
            results["runs"].append(r)
            print(f"{name:14s} {capture:6s} capture {r['capture_seconds']:6.2f} s, peak {r['rss_peak_capture_mb']:7.0f} MB "
                  f"(model {r['rss_model_mb']:.0f} MB); export {r['export_seconds']:6.1f} s, peak "
                  f"{r['rss_peak_export_mb']:7.0f} MB, max rel err {r['max_rel_err']:.1e}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
