"""Graph nodes the converters address: the exit policy tail kept FP32 (its nodes and the tensors
it reads), unique node names."""

from __future__ import annotations


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


def tail_tensors(model, tail_nodes, weighted_ops) -> set[str]:
    """Tensors that must reach the policy tail unquantised: every input of ``tail_nodes``, and
    the logits back through non-weighted ops (an upsampling Resize) to the output of the
    weighted op (one of ``weighted_ops``) that computes them.

    Checked by tensor, not by node name: a quantiser names the nodes it inserts after the
    tensor (``<tensor>_QuantizeLinear``), never after a tail node.
    """
    tail = set(tail_nodes)
    producer = {o: n for n in model.graph.node for o in n.output}
    reads = {i for n in model.graph.node if n.name in tail for i in n.input if i}
    guarded, todo = set(reads), [t for t in reads if t in producer and producer[t].name not in tail]
    while todo:
        node = producer[todo.pop()]
        if node.op_type in weighted_ops or not node.input or not node.input[0]:
            continue
        src = node.input[0]  # the data input; the others are sizes, scales, axes
        if src not in guarded:
            guarded.add(src)
            if src in producer:
                todo.append(src)
    return guarded


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


def exit_tails(pkg, model, seg) -> list[str]:
    """Nodes of segment ``seg`` to keep FP32 and unquantised: the policy after the exit's logits."""
    if seg.kind == "chunk":
        return []
    ex = next((ex for ex in pkg.exits if seg.name in (ex.segment, ex.tail)), None)
    if ex is None:
        return []
    # the policy reads the native logits in the head (policy_at="native"), the labels the logits in the tail
    logits = ex.logits if seg.kind == "tail" else (ex.policy_logits or ex.logits)
    return policy_tail(model, logits)
