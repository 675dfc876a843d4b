"""What each exit policy kind costs in the graph, next to its numpy reference (ONNX Runtime, CPU).

    python -m mesc.benchmarks.policy_kinds [--shapes 6x128x256,6x16x32,19x512x1024] [--iters 10]
        [--threads 2] [--json OUT]

Per logits shape M x H x W (batch 1) and every kind with an in-graph builder
(:func:`mesc.exporters.policy.in_graph_kinds`: ``mess`` at stride 8 with the paper's edge band,
``mean_top1``, ``mean_entropy``, ``fft`` with the DFT as MatMuls, ``learned`` with a random
8-unit network, and any kind registered since), the policy subgraph alone on the logits (labels and score, as the runtime
fetches them) is timed, median after warm-up, beside the numpy reference on the host. The
logits are smooth (noise at 1/8 resolution, repeated) like a segmentation's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment
from mesc.benchmarks.policy_cost import identity_head
from mesc.benchmarks.shared import cpu_session, median_ms

# the settings every kind is measured with (MESS reads them; the other kinds ignore them)
POLICY = {"confidence": "top1", "edge": True, "stride": 8, "band": "paper", "th_pix": 0.9}


def _logits(m: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    low = rng.standard_normal((1, m, -(-h // 8), -(-w // 8))).astype(np.float32) * 3
    return np.ascontiguousarray(low.repeat(8, 2).repeat(8, 3)[:, :, :h, :w])


def measure(m: int, h: int, w: int, iters: int, threads: int) -> dict:
    from mesc.exporters.policy import append_kind, in_graph_kinds
    from mesc.policy import get_kind
    from mesc.policy.learned import FEATURES, DecisionNet

    x = _logits(m, h, w)
    rng = np.random.default_rng(1)
    net = DecisionNet(rng.normal(size=(FEATURES, 8)), rng.normal(size=8), rng.normal(size=8), 0.0)
    out = {}
    for kind in in_graph_kinds():
        spec = get_kind(kind)
        model = append_kind(identity_head(m, h, w), "logits", "exit", kind, POLICY, net=net)
        feeds = {"x": x, **({"exit_th_pix": np.array([POLICY["th_pix"]], np.float32)} if spec.pixel_threshold else {})}
        sess = cpu_session(model, threads)
        fetch = ["exit_labels", "exit_confidence"]
        score = float(sess.run(["exit_confidence"], feeds)[0][0])

        def host(spec=spec):
            return spec.score(x, POLICY, net=net)

        out[kind] = {"graph_ms": round(median_ms(lambda: sess.run(fetch, feeds), 2, iters), 3),
                     "host_numpy_ms": round(median_ms(host, 1, iters), 3),
                     "score_graph": score, "score_numpy": float(host()[0]),
                     "onnx_bytes": len(model.SerializeToString())}
    return {"logits_shape": [1, m, h, w], "kinds": out}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="6x128x256,6x16x32,19x512x1024", help="comma-separated MxHxW")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    results = []
    for spec in args.shapes.split(","):
        m, h, w = (int(v) for v in spec.lower().split("x"))
        r = measure(m, h, w, args.iters, args.threads)
        results.append(r)
        print(f"logits 1x{m}x{h}x{w}: " + "  ".join(
            f"{k} {v['graph_ms']:.2f} ms (numpy {v['host_numpy_ms']:.2f})" for k, v in r["kinds"].items()), flush=True)
    if args.json:
        from mesc.package.staging import write_json_atomic

        write_json_atomic(Path(args.json), {"environment": environment("cpu", args.threads), "threads": args.threads,
                                            "iters": args.iters, "results": results})


if __name__ == "__main__":
    main()
