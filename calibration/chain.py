"""Run a package's segments on ONNX Runtime CPU with cached sessions, and find policy tails.

Like ``exporters.verify.run_chain`` but the sessions live across images and any segment's
graph can be swapped for a prepared one (FP16, INT8), which calibration and the accuracy
check need.
"""

from __future__ import annotations

import numpy as np

from mesc.lazy import require


def th_pix_feeds(pkg) -> dict:
    return {ex["th_pix_input"]: np.array([ex["policy"]["th_pix"]], np.float32)
            for ex in pkg.exits if ex.get("th_pix_input")}


class OrtChain:
    """``OrtChain(pkg, files={segment: path})``; ``run(batch)`` returns every tensor by name."""

    def __init__(self, pkg, files: dict | None = None, threads: int | None = None, fake_quant: bool = False):
        ort = require("onnxruntime", extra="core")
        opts = ort.SessionOptions()
        if fake_quant:
            # Keep Q/DQ as separate ops (float math on quantised values), as TensorRT's numerics
            # are; ORT's fused QLinearConv on x86 without VNNI saturates int16 sums and would
            # report errors TensorRT does not make.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        files = files or {}
        self.pkg = pkg
        self.sessions = []
        for seg in pkg.segments:
            path = str(files.get(seg["name"], pkg.path(seg["file"])))
            self.sessions.append(ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]))
        self.th = th_pix_feeds(pkg)

    def run(self, batch: np.ndarray, keep=None) -> dict:
        env = {self.pkg.input["name"]: batch}
        for seg, sess in zip(self.pkg.segments, self.sessions):
            feeds = {t["name"]: env[t["name"]] if t["name"] in env else self.th[t["name"]] for t in seg["inputs"]}
            names = [o.name for o in sess.get_outputs()]
            env.update(zip(names, sess.run(names, feeds)))
        if keep is not None:
            env = {k: v for k, v in env.items() if k in keep}
        return env


def segment_inputs(pkg, batches) -> dict[str, list[dict]]:
    """Each segment's input feeds for each batch, as the FP32 segments before it produce them."""
    chain = OrtChain(pkg)
    wanted = {t["name"] for seg in pkg.segments for t in seg["inputs"]}
    envs = [chain.run(b, keep=wanted) for b in batches]
    th = th_pix_feeds(pkg)
    return {seg["name"]: [{t["name"]: env.get(t["name"], th.get(t["name"])) for t in seg["inputs"]}
                          for env in envs]
            for seg in pkg.segments}


def policy_tail(model, logits: str | None) -> list[str]:
    """Names of the nodes downstream of the ``logits`` tensor: the in-graph exit policy
    (Softmax, pooling, comparisons, ArgMax, Cast, reductions), which must stay FP32 and
    unquantised: its thresholds compare probabilities that a coarser type would shift."""
    if not logits:
        return []
    reached, tail = {logits}, []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if any(i in reached for i in node.input):
            tail.append(node.name)
            reached.update(node.output)
    return tail


def named_nodes(model, prefix: str) -> None:
    """Give every unnamed node a unique name: the converters address nodes by name."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{prefix}_{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)
