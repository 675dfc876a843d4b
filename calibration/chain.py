"""Run a package's segments on ONNX Runtime CPU with cached sessions, and find policy tails.

The sessions live across images and any segment's graph can be swapped for a prepared one
(FP16, INT8), which calibration and the accuracy check need.
"""

from __future__ import annotations

import numpy as np



def th_pix_feeds(pkg) -> dict:
    return {ex["th_pix_input"]: np.array([ex["policy"]["th_pix"]], np.float32)
            for ex in pkg.exits if ex.get("th_pix_input")}


def segment_inputs(pkg, batches) -> dict[str, list[dict]]:
    """Each segment's input feeds for each batch, as the FP32 segments before it produce them."""
    from mesc.runtime.backends.onnxrt.chain import OrtChain

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
