"""The in-graph exit policy's share of each exit head's latency, on the reference models.

    python -m mesc.benchmarks.policy_share [--models mbv2-fcn,...] [--shape 1x3x512x1024]
        [--iters 10] [--threads 2] [--json OUT]

Each model is exported three times (no policy; policy at the output resolution, the MESS
definition; policy at the head's native resolution, with the upsampling and labels in a tail
segment) and every exit head is timed on ONNX Runtime CPU, median after warm-up. The native
policy's share is measured against the same head cut at its native logits; the tail, paid only
by the images leaving at that exit, is reported beside it. The host alternative is what users would write without
mesc: fetch the logits and run the policy in numpy (``mesc.policy.mess_confidence_fast``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment, measure as time_calls, summarize


def _median_ms(fn, iters: int, warmup: int = 2) -> float:
    # the harness reads a timed call's return value as its part timings: discard results
    return summarize(time_calls(lambda: fn() and None, warmup, iters))["median"]


def _head_times(pkg, threads: int, iters: int, fetch: str) -> dict:
    """Median ms of each head segment, fed with the activations the chunks before it produce."""
    import onnxruntime as ort

    from mesc.exporters.verify import run_chain

    x = np.random.default_rng(0).standard_normal([int(d) if isinstance(d, int) else 1 for d in pkg.input.shape])
    env = run_chain(pkg, x.astype(np.float32))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    out = {}
    for ex in pkg.exits:
        seg = pkg.segment(ex.segment)
        sess = ort.InferenceSession(str(pkg.path(seg.file)), so, providers=["CPUExecutionProvider"])
        feeds = {t.name: env[t.name] if t.name in env else np.array([0.9], np.float32)
                 for t in seg.inputs}
        names = [ex.logits] if fetch == "logits" else [ex.confidence]
        logits = {}

        def run():
            logits["v"] = sess.run(names, feeds)[0]

        out[ex.name] = {"ms": _median_ms(run, iters)}
        if ex.tail:
            # the same head cut at the native logits: what the head costs without its policy
            import onnx
            from onnx.utils import Extractor

            model = onnx.load(str(pkg.path(seg.file)))
            ins = [t.name for t in seg.inputs if t.name != ex.th_pix_input]
            cut = Extractor(model).extract_model(ins, [ex.policy_logits])
            bare = ort.InferenceSession(cut.SerializeToString(), so, providers=["CPUExecutionProvider"])
            bare_feeds = {n: feeds[n] for n in ins}
            out[ex.name]["bare_ms"] = _median_ms(lambda: bare.run(None, bare_feeds), iters)
            tail = pkg.segment(ex.tail)
            tsess = ort.InferenceSession(str(pkg.path(tail.file)), so, providers=["CPUExecutionProvider"])
            tfeeds = {t.name: env[t.name] for t in tail.inputs}
            out[ex.name]["tail_ms"] = _median_ms(lambda: tsess.run(None, tfeeds), iters)
        if fetch == "logits":
            from mesc.policy import edge_band_of
            from mesc.policy import mess_confidence_fast

            p = ex.policy
            out[ex.name]["host_policy_ms"] = _median_ms(
                lambda: mess_confidence_fast(logits["v"], 0.9, p["confidence"], p["edge"], p["stride"],
                                             edge_band_of(p)), iters)
    return out


def measure(name: str, shape, threads: int, iters: int) -> dict:
    from mesc.exporters.export import ExportOptions, export

    res = {"model": name, "input_shape": list(shape), "exits": {}}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"plain": dict(policy=None), "output": dict(policy_at="output"), "native": dict(policy_at="native")}
        times = {}
        for v, kw in variants.items():
            pkg = export(name, Path(tmp) / v, options=ExportOptions(input_shape=shape, verify=False, **kw))
            times[v] = _head_times(pkg, threads, iters, "logits" if v == "plain" else "confidence")
        for ex, plain in times["plain"].items():
            row = {"head_ms": round(plain["ms"], 2), "host_policy_ms": round(plain["host_policy_ms"], 2)}
            t = times["output"][ex]["ms"]
            row["output_ms"] = round(t, 2)
            row["output_share"] = round(max(0.0, t - plain["ms"]) / t, 4)
            nat = times["native"][ex]
            # native: the head an image passes through (no upsampling), its policy's share of
            # that head, and the tail paid only when the image leaves there
            row["native_ms"] = round(nat["ms"], 2)
            base = nat.get("bare_ms", plain["ms"])
            row["native_share"] = round(max(0.0, nat["ms"] - base) / nat["ms"], 4)
            row["native_tail_ms"] = round(nat.get("tail_ms", 0.0), 2)
            res["exits"][ex] = row
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="drn50-fcn,mbv2-fcn,hrnet18")
    ap.add_argument("--shape", default="1x3x512x1024")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    shape = tuple(int(d) for d in args.shape.split("x"))
    out = {"machine": environment("cpu", args.threads), "runs": []}
    print(f"{'model':14s} {'exit':6s} {'head ms':>8s} {'+policy@output':>15s} {'share':>6s} "
          f"{'native head':>12s} {'share':>6s} {'tail':>7s} {'host policy ms':>15s}")
    for name in args.models.split(","):
        r = measure(name, shape, args.threads, args.iters)
        out["runs"].append(r)
        for ex, row in r["exits"].items():
            print(f"{name:14s} {ex:6s} {row['head_ms']:8.1f} {row['output_ms']:15.1f} {100 * row['output_share']:5.1f}% "
                  f"{row['native_ms']:12.1f} {100 * row['native_share']:5.1f}% {row['native_tail_ms']:7.1f} "
                  f"{row['host_policy_ms']:15.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
