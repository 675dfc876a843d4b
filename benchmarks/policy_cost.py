"""What the in-graph MESS exit policy costs next to an exit head (ONNX Runtime, CPU).

    python -m mesc.benchmarks.policy_cost --height 512 --width 1024 --classes 19 --strides 8 [--json OUT]
    python -m mesc.benchmarks.policy_cost --head exit0_head.onnx [--logits NAME] --strides 8

Per output stride it times (median over --iters after --warmup runs):

- ``head``          the exit head alone (features -> full-size logits);
- ``head+policy``   the same head with :func:`mesc.exporters.policy.mess.append_policy`;
- ``policy``        the policy subgraph alone on N x M x H x W logits;
- ``host_ref``      the host alternative: logits out of the head, then the numpy reference
                    (explicit median on the edge band; --host-iters runs, it is slow);
- ``host_fast``     the host alternative with the sort-free numpy path
                    (:func:`mesc.policy.mess_confidence_fast`).

The built-in head stands for a MESS exit: 3x3 conv C->C + ReLU + 1x1 classifier at 1/os
resolution, then bilinear Resize to full size. Its input features are smooth (noise drawn at
1/8 of the feature resolution and repeated) so label regions and the edge band look like a
segmentation's rather than salt and pepper. --head takes any exit-head ONNX instead; its
inputs are fed random data at their declared shapes (a dynamic first dim = --batch).
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from mesc.benchmarks.shared import cpu_session, median_ms
from mesc.package.staging import write_json_atomic
from mesc.policy import CONFIDENCE_KINDS, EDGE_BANDS


def build_head(classes: int, height: int, width: int, stride: int, channels: int = 128, opset: int = 17,
               seed: int = 0):
    """A representative exit head as ONNX: conv3x3 + ReLU + conv1x1 at 1/stride, bilinear to H x W."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mesc.errors import MescError

    if height % stride or width % stride:
        raise MescError(f"--height/--width ({height} x {width}) must be multiples of the stride {stride}")
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (9 * channels))).astype(np.float32)
    w2 = (rng.standard_normal((classes, channels, 1, 1)) * np.sqrt(2 / channels)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(channels, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(classes, np.float32), "b2"),
             numpy_helper.from_array(np.array([1, 1, stride, stride], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["feat", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["low"]),
             helper.make_node("Resize", ["low", "", "scales"], ["logits"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    g = helper.make_graph(nodes, "exit_head",
                          [helper.make_tensor_value_info("feat", TensorProto.FLOAT,
                                                         ["N", channels, height // stride, width // stride])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes, height, width])],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def identity_head(classes: int, height: int, width: int, opset: int = 17):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "logits_only",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", classes, height, width])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes, height, width])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _feeds(sess, batch: int, rng, smooth: bool):
    from mesc.errors import MescError

    feeds = {}
    for i in sess.get_inputs():
        if i.name.endswith("_th_pix"):
            continue
        shape = [batch if k == 0 and not isinstance(d, int) else d for k, d in enumerate(i.shape)]
        if not all(isinstance(d, int) for d in shape):
            raise MescError(f"head input {i.name!r} has dynamic dims {i.shape} beyond the batch; export it at a fixed size")
        if smooth and len(shape) == 4 and shape[2] >= 8 and shape[3] >= 8:
            low = rng.standard_normal(shape[:2] + [-(-shape[2] // 8), -(-shape[3] // 8)]).astype(np.float32)
            x = low.repeat(8, axis=2).repeat(8, axis=3)[:, :, :shape[2], :shape[3]]
        else:
            x = rng.standard_normal(shape).astype(np.float32)
        feeds[i.name] = np.ascontiguousarray(x)
    return feeds


def measure(head_model, logits: str, stride: int, args) -> dict:
    from mesc.exporters.policy.mess import append_policy
    from mesc.policy import edge_band, mess_confidence, mess_confidence_fast, predicted_labels

    rng = np.random.default_rng(0)
    th = np.array([args.th_pix], np.float32)
    edge, band = not args.no_edge, args.edge_band
    head = cpu_session(head_model, args.threads)
    with_policy = cpu_session(append_policy(head_model, logits, "exit", args.confidence, edge, stride, band=band),
                           args.threads)
    feeds = _feeds(head, args.batch, rng, smooth=args.head is None)
    out_names = [o.name for o in head.get_outputs()]
    x = head.run([logits], feeds)[0]
    n, m, h, w = x.shape
    policy_only = cpu_session(append_policy(identity_head(m, h, w), "logits", "exit", args.confidence, edge, stride,
                                         band=band), args.threads)

    t_head = median_ms(lambda: head.run(out_names, feeds), args.warmup, args.iters)
    t_both = median_ms(lambda: with_policy.run(None, {**feeds, "exit_th_pix": th}), args.warmup, args.iters)
    t_pol = median_ms(lambda: policy_only.run(["exit_confidence", "exit_labels"], {"x": x, "exit_th_pix": th}),
                         args.warmup, args.iters)
    t_fast = median_ms(lambda: mess_confidence_fast(x, args.th_pix, args.confidence, edge, stride, band),
                          1, args.host_iters)
    t_ref = (median_ms(lambda: mess_confidence(x, args.th_pix, args.confidence, edge, stride, band), 0, args.host_iters)
             if args.host_iters > 0 else None)

    c_graph = with_policy.run(["exit_confidence"], {**feeds, "exit_th_pix": th})[0]
    c_ref = mess_confidence_fast(x, args.th_pix, args.confidence, edge, stride, band)
    return {
        "stride": stride, "logits_shape": [n, m, h, w], "band": band,
        "band_fraction": round(float(edge_band(predicted_labels(x), stride, band).mean()), 4) if edge else 0.0,
        "c_img": [round(float(v), 5) for v in c_graph],
        "max_abs_diff_vs_numpy": float(np.abs(c_graph - c_ref).max()),
        "ms": {"head": round(t_head, 2), "head+policy": round(t_both, 2), "policy": round(t_pol, 2),
               "host_ref": None if t_ref is None else round(t_ref, 1), "host_fast": round(t_fast, 2)},
        "policy_share_of_head_with_policy": round((t_both - t_head) / t_both, 4),
        "policy_alone_over_head": round(t_pol / t_head, 4),
        "bytes_to_host": {"in_graph": 4 * n, "in_graph_with_labels": 4 * n + 4 * n * h * w, "host": x.nbytes},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--channels", type=int, default=128, help="feature channels of the built-in head")
    ap.add_argument("--strides", default="8", help="comma-separated output strides, e.g. 4,8")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--confidence", choices=CONFIDENCE_KINDS, default="top1")
    ap.add_argument("--no-edge", action="store_true")
    ap.add_argument("--edge-band", choices=EDGE_BANDS, default="paper")
    ap.add_argument("--th-pix", type=float, default=0.7)
    ap.add_argument("--head", default=None, help="an exit-head ONNX file to use instead of the built-in head")
    ap.add_argument("--logits", default=None, help="logits tensor of --head (default: its first output)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--host-iters", type=int, default=3, help="runs of the numpy reference (0: skip it)")
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort

    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version(), "onnxruntime": ort.__version__,
                           "numpy": np.__version__},
               "settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": []}
    for stride in (int(s) for s in args.strides.split(",")):
        if args.head:
            model = onnx.load(args.head)
            logits = args.logits or model.graph.output[0].name
        else:
            model, logits = build_head(args.classes, args.height, args.width, stride, args.channels), "logits"
        results["runs"].append(measure(model, logits, stride, args))

    hdr = f"{'os':>3} {'logits':>18} {'band':>6} {'head ms':>9} {'+policy ms':>11} {'policy ms':>10} " \
          f"{'share':>7} {'host_ref ms':>12} {'host_fast ms':>13}"
    print(hdr)
    for r in results["runs"]:
        ms = r["ms"]
        ref = "-" if ms["host_ref"] is None else f"{ms['host_ref']:.1f}"
        print(f"{r['stride']:>3} {'x'.join(map(str, r['logits_shape'])):>18} {r['band_fraction']:>6.3f} "
              f"{ms['head']:>9.2f} {ms['head+policy']:>11.2f} {ms['policy']:>10.2f} "
              f"{r['policy_share_of_head_with_policy']:>7.1%} {ref:>12} {ms['host_fast']:>13.2f}")
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
