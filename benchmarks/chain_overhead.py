"""What chaining costs: the segmented pipeline taking the final exit vs one monolithic session.

    python -m mesc.benchmarks.chain_overhead [--models mbv2-deeplab,...] [--shapes 1x3x128x256,1x3x512x1024]
                                             [--iters 10] [--warmup 2] [--threads N] [--json OUT]

Per model and input shape, on the same backend (ONNX Runtime CPU), same threads, same input:

* ``mono``   one ONNX session of the whole final-exit path (the eager model's final exit exported
             with torch.onnx.export, dynamo=False, opset 17), logits to the host, argmax;
* ``chain``  the mesc pipeline, budgeted at the final exit, on a package without the in-graph
             policy: the same work as ``mono`` split into segments (logits to host, argmax);
             ``chain / mono`` is the overhead of chaining (target <= 1.05);
* ``chain_policy``  the input-dependent pipeline on a package with the in-graph policy, thresholds
             set so no image leaves early: every exit's head and policy run (the real worst case);
* ``eager``  the PyTorch model (all exits) plus the same policy in Python (numpy) at every exit.

Timings interleave the variants round-robin (rotating order, a pause between them) so that drift
on a shared machine hits all alike;
figures are medians after warm-up. Prints a table; --json writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mesc.benchmarks.baselines import eager_policy, final_exit_onnx
from mesc.runtime.backends.onnxrt.loader import SPIN_MODES


def measure(name: str, shape, iters: int, warmup: int, threads: int, spin: str = "run") -> dict:
    import onnxruntime as ort
    import torch

    import mesc
    from mesc.exporters.export import ExportOptions, export
    from mesc.models import create
    from mesc.runtime.backends.onnxrt.loader import session_options

    torch.manual_seed(0)
    net = create(name).eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain = export(net, tmp / "plain", options=ExportOptions(input_shape=shape, policy=None, verify=False))
        graph = export(net, tmp / "graph", options=ExportOptions(input_shape=shape, policy="top1", verify=False))
        final_exit_onnx(net, shape, tmp / "mono.onnx")
        mono = ort.InferenceSession(str(tmp / "mono.onnx"), sess_options=session_options(threads, spin),
                                    providers=["CPUExecutionProvider"])
        chain = mesc.load(plain.root, threads=threads, spin=spin)
        policy = mesc.load(graph.root, threads=threads, spin=spin)
        for k in range(len(policy.exit_names)):
            policy.set_thresholds(k, th_pix=1.0, th_img=1.0)
        last = len(chain.exit_names) - 1
        eager = eager_policy(net, plain, threads)

        variants = {
            "mono": lambda: np.argmax(mono.run(["logits"], {"image": x})[0], axis=1),
            "chain": lambda: chain(x, exit=last),
            "chain_policy": lambda: policy(x),
            "eager": lambda: eager(x),
        }
        # same answer from the chain and the monolithic graph, or the comparison means nothing
        same = np.mean(np.stack([r.labels for r in variants["chain"]()]) == variants["mono"]())
        times = {k: [] for k in variants}
        names = list(variants)
        for i in range(warmup + iters):
            # rotate the order, and pause between variants: torch's OpenMP threads keep spinning
            # after the eager run and would otherwise slow whatever comes right after it
            for k in names[i % len(names):] + names[: i % len(names)]:
                time.sleep(0.05)
                t0 = time.perf_counter()
                variants[k]()
                if i >= warmup:
                    times[k].append((time.perf_counter() - t0) * 1e3)
        chain.close()
        policy.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"model": name, "input_shape": list(shape), "threads": threads, "spin": spin, "iters": iters,
                # what the float batch runs: the entry segment (uint8 input only) is not timed here
                "segments": sum(s.kind != "entry" for s in plain.segments), "labels_agree": round(float(same), 6),
                "median_ms": {k: round(v, 2) for k, v in med.items()},
                "min_ms": {k: round(min(v), 2) for k, v in times.items()},
                "chain_over_mono": round(med["chain"] / med["mono"], 3),
                "chain_policy_over_mono": round(med["chain_policy"] / med["mono"], 3),
                "eager_over_mono": round(med["eager"] / med["mono"], 3)}


def format_table(runs) -> str:
    rows = [("model", "input", "mono ms", "chain ms", "chain/mono", "chain+policy ms", "eager ms", "agree")]
    for r in runs:
        m = r["median_ms"]
        rows.append((r["model"], "x".join(map(str, r["input_shape"])), f"{m['mono']:.1f}", f"{m['chain']:.1f}",
                     f"{r['chain_over_mono']:.3f}", f"{m['chain_policy']:.1f}", f"{m['eager']:.1f}",
                     f"{r['labels_agree']:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mbv2-deeplab,hrnet18,drn50-fcn")
    ap.add_argument("--shapes", default="1x3x128x256,1x3x512x1024")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--spin", choices=SPIN_MODES, default="run",
                    help="ORT threads spin while a run lasts (run, mesc's default), never (off), or also after it "
                         "(on, ORT's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version()}, "runs": []}
    for shape_text in args.shapes.split(","):
        shape = tuple(int(d) for d in shape_text.split("x"))
        for name in args.models.split(","):
            r = measure(name, shape, args.iters, args.warmup, args.threads, args.spin)
            out["runs"].append(r)
            print(json.dumps(r), flush=True)
    print(format_table(out["runs"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
