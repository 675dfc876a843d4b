"""Export time, package size and per-segment FLOP shares of the reference models.

    python -m mesc.benchmarks.export_cost [--models drn50-fcn,...] [--shape 1x3x512x1024] [--json OUT]

Each model is exported (with verification against PyTorch) into a temporary directory that is
removed afterwards; the figures go to stdout and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _package_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def measure(name: str, shape, verify: bool = True, capture: str = "export") -> dict:
    from mesc.exporters.export import ExportOptions, export

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pkg = export(name, Path(tmp) / "pkg", options=ExportOptions(input_shape=shape, verify=verify, capture=capture))
        seconds = time.perf_counter() - t0
        total = sum(s.flops for s in pkg.segments)
        return {
            "model": name,
            "input_shape": list(shape),
            "export_seconds": round(seconds, 2),
            "package_mb": round(_package_bytes(pkg.root) / 2**20, 2),
            "gflops_total": round(total / 1e9, 2),
            "segments": [{"name": s.name, "gflops": round(s.flops / 1e9, 3),
                          "share": round(s.flops / total, 4),
                          "live_in": len([t for t in s.inputs if not t.name.endswith("_th_pix")])}
                         for s in pkg.segments],
            "max_rel_err": max((v["max_abs_err"] / v["scale"] for v in pkg.manifest.get("verification", {}).values()),
                               default=None),
        }


def main(argv=None):
    from mesc.models import list_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(m for m in list_models() if m not in ("demo", "unet-skip")))
    ap.add_argument("--shape", default="1x3x512x1024")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    shape = tuple(int(d) for d in args.shape.split("x"))
    from mesc.benchmarks.harness import environment

    results = {"machine": environment("cpu"), "runs": []}
    for name in args.models.split(","):
        r = measure(name, shape, verify=not args.no_verify)
        results["runs"].append(r)
        shares = " ".join(f"{s['name']}={100 * s['share']:.1f}%" for s in r["segments"])
        print(f"{name:16s} export {r['export_seconds']:7.1f} s  package {r['package_mb']:7.1f} MB  "
              f"{r['gflops_total']:7.1f} GFLOPs  max rel err {r['max_rel_err']:.1e}  {shares}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
