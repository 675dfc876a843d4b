"""The in-graph MESS policy's two window forms, ``pooling="shift"`` and ``"pool"``, on ONNX
Runtime's CPU: nodes a head gets, and what a head with its policy costs each way.

    python -m mesc.benchmarks.policy_pooling [--sizes 128x256,512x1024] [--iters 200] [--json OUT]

- node counts: the policy's nodes per stride (8, 16, 32) and band (paper, wide), top-1
  confidence, at every --sizes (static sizes: the reflect pads' chain depends on them);
- latency: the exit head of :mod:`mesc.benchmarks.policy_cost` (3x3 conv, 1x1 classifier,
  bilinear upsampling) with the policy appended each way, at every --sizes (stride --stride,
  the paper's band), timed round-robin (:func:`mesc.benchmarks.harness.interleave`) so that
  the load of a shared machine hits both alike; the policy alone on the head's logits too.

Both forms' c_img are checked equal on the timed input. On a GPU every node is a kernel launch
(several us outside a CUDA graph), which is why a TensorRT target gets ``pool``
(:mod:`mesc.exporters.policy.pooling`); this script measures the CPU side, where ``shift``
stays the default.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mesc.benchmarks.harness import environment, interleave, summarize
from mesc.benchmarks.policy_cost import build_head, identity_head
from mesc.benchmarks.shared import cpu_session
from mesc.package.staging import write_json_atomic
from mesc.policy import EDGE_BANDS, POOLINGS

STRIDES = (8, 16, 32)


def policy_nodes(h: int, w: int, stride: int, band: str, pooling: str, classes: int = 19) -> int:
    """Nodes :func:`~mesc.exporters.policy.mess.append_policy` adds to a head at H x W."""
    from mesc.exporters.policy.mess import append_policy

    model = append_policy(identity_head(classes, h, w), "logits", "e", "top1", True, stride, pooling, band=band)
    return sum(1 for n in model.graph.node if n.name.startswith("e_policy/"))


def time_size(h: int, w: int, args) -> dict:
    """Head+policy and policy alone, shift against pool, at H x W (median ms over --iters)."""
    from mesc.exporters.policy.mess import append_policy

    head = build_head(args.classes, h, w, args.stride, args.channels)
    sessions, alone = {}, {}
    for p in POOLINGS:
        sessions[p] = cpu_session(append_policy(head, "logits", "e", "top1", True, args.stride, p), args.threads)
        alone[p] = cpu_session(append_policy(identity_head(args.classes, h, w), "logits", "e", "top1", True,
                                             args.stride, p), args.threads)
    rng = np.random.default_rng(0)
    # smooth features (noise at 1/8 of the feature map, repeated): label regions, not salt and pepper
    fh, fw = h // args.stride, w // args.stride
    low = rng.standard_normal((1, args.channels, -(-fh // 8), -(-fw // 8))).astype(np.float32)
    feat = np.ascontiguousarray(low.repeat(8, 2).repeat(8, 3)[:, :, :fh, :fw])
    th = np.array([args.th_pix], np.float32)
    feeds = {"feat": feat, "e_th_pix": th}
    logits = sessions["shift"].run(["logits"], feeds)[0]
    conf = {p: sessions[p].run(["e_confidence"], feeds)[0] for p in POOLINGS}
    if not np.array_equal(conf["shift"], conf["pool"]):
        raise SystemExit(f"{h}x{w}: shift and pool disagree: c_img {conf['shift']} vs {conf['pool']}")
    variants = {}
    for p in POOLINGS:
        variants[f"head+policy {p}"] = lambda s=sessions[p]: s.run(["e_confidence", "e_labels"], feeds) and None
        variants[f"policy {p}"] = (lambda s=alone[p]: s.run(["e_confidence", "e_labels"],
                                                             {"x": logits, "e_th_pix": th}) and None)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    timed = interleave(variants, args.warmup, args.iters)
    ms = {name: round(summarize(v["total"])["median"], 3) for name, v in timed.items()}
    return {
        "size": [h, w], "stride": args.stride, "band": "paper", "c_img": float(conf["shift"][0]),
        "median_ms": ms,
        "pool_over_shift": {"head+policy": round(ms["head+policy pool"] / ms["head+policy shift"], 3),
                            "policy": round(ms["policy pool"] / ms["policy shift"], 3)},
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def parse_sizes(text: str) -> list:
    out = []
    for item in text.split(","):
        h, _, w = item.strip().partition("x")
        if not (h.isdigit() and w.isdigit()):
            raise SystemExit(f"--sizes: expected HxW[,HxW...], got {item!r}")
        out.append((int(h), int(w)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128x256,512x1024", help="comma-separated HxW logits sizes")
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--channels", type=int, default=128, help="feature channels of the head")
    ap.add_argument("--stride", type=int, default=8, help="output stride of the timed head")
    ap.add_argument("--th-pix", type=float, default=0.7)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=200, help="timed rounds (each runs all four variants)")
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes)

    nodes = [{"size": [h, w], "stride": s, "band": b, **{p: policy_nodes(h, w, s, b, p, args.classes)
                                                         for p in POOLINGS}}
             for h, w in sizes for s in STRIDES for b in EDGE_BANDS]
    results = {"benchmark": "policy_pooling", "machine": environment(None, args.threads or None),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "settings": {k: v for k, v in vars(args).items() if k != "json"},
               "nodes": nodes, "latency": [time_size(h, w, args) for h, w in sizes]}

    print(f"{'size':>9} {'os':>3} {'band':>6} {'shift':>6} {'pool':>5}   policy nodes")
    for r in nodes:
        print(f"{'x'.join(map(str, r['size'])):>9} {r['stride']:>3} {r['band']:>6} {r['shift']:>6} {r['pool']:>5}")
    print(f"\n{'size':>9} {'head+policy shift':>18} {'pool':>8} {'pool/shift':>10} {'policy shift':>13} "
          f"{'pool':>8} {'pool/shift':>10}   ms, median of {args.iters}")
    for r in results["latency"]:
        ms, q = r["median_ms"], r["pool_over_shift"]
        print(f"{'x'.join(map(str, r['size'])):>9} {ms['head+policy shift']:>18.3f} {ms['head+policy pool']:>8.3f} "
              f"{q['head+policy']:>10.3f} {ms['policy shift']:>13.3f} {ms['policy pool']:>8.3f} {q['policy']:>10.3f}")
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
