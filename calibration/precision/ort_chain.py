"""Run a package's segments on ONNX Runtime CPU with cached sessions, and find policy tails.

The sessions live across images and any segment's graph can be swapped for a prepared one
(FP16, INT8), which calibration and the accuracy check need.
"""

from __future__ import annotations

import numpy as np



def th_pix_feeds(pkg) -> dict:
    return {ex["th_pix_input"]: np.array([ex["policy"]["th_pix"]], np.float32)
            for ex in pkg.exits if ex.get("th_pix_input")}


class OrtChain:
    """``OrtChain(pkg, files={segment: path})``; ``run(batch)`` returns every tensor by name.

    The runtime's ONNX Runtime chain on the CPU, with any segment's graph swapped for a
    prepared one (FP16, INT8); ``fake_quant`` turns graph optimisation off so Q/DQ run as
    separate float ops, as TensorRT computes them.
    """

    def __init__(self, pkg, files: dict | None = None, threads: int | None = None, fake_quant: bool = False):
        from mesc.runtime.devices import Device
        from mesc.runtime.pipeline import Pipeline
        from mesc.runtime.runners.onnxrt import OrtRunner

        self.pipe = Pipeline(pkg, OrtRunner(pkg, Device("cpu"), threads=threads, files=files,
                                            optimize=not fake_quant))

    def run(self, batch: np.ndarray, keep=None) -> dict:
        env = self.pipe.tensors(batch)
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
