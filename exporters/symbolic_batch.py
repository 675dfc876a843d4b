"""Sizes that follow the symbolic batch of a torch.export graph, recomputed where they are used.

Under ``--dynamic-batch`` torch.export keeps the batch a symbol s, and every size derived from it
(``B``, ``B * heads``, ``B * N``) is a SymInt node. Such a node may be computed in one segment and
read in another, but only tensors cross a cut. So each tensor op that reads a batch-derived size
gets its own copy of it, computed from the size of a tensor it already reads. The op itself is
called as the Tensor method (or torch function) of its name: the ONNX exporter's tracer records
``t.size(d)`` and the sizes passed to ``t.view(...)`` as Shape/Gather, but bakes in the ints passed
to an ``aten`` op overload, which would fix the batch.
"""

from __future__ import annotations

import operator

from mesc.errors import ExportError
from mesc.lazy import require

torch = require("torch", purpose="splitting a PyTorch model")
fx = torch.fx


def _symbolic(node) -> bool:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return isinstance(val, torch.SymInt) and bool(val.node.expr.free_symbols)


def _reads_tensor(node) -> bool:
    val = node.meta.get("val")
    vals = val if isinstance(val, (list, tuple)) else [val]
    return any(isinstance(v, torch.Tensor) for v in vals)


def _linear(expr, sym) -> tuple[int, int] | None:
    """(a, b) with expr == a * sym + b in integers, else None."""
    import sympy

    if expr.free_symbols != {sym}:
        return None
    try:
        poly = sympy.Poly(expr, sym)
    except sympy.PolynomialError:
        return None
    coeffs = poly.all_coeffs()
    if poly.degree() != 1 or not all(c.is_Integer for c in coeffs):
        return None
    return int(coeffs[0]), int(coeffs[1])


def _batch_source(user, sym, image):
    """A tensor ``user`` reads (else the image) and a dim of it that is c * sym: (tensor, dim, c)."""
    for t in [a for a in user.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor)] + [image]:
        for d, size in enumerate(t.meta["val"].shape):
            if isinstance(size, torch.SymInt):
                lin = _linear(size.node.expr, sym)
                if lin and lin[1] == 0:
                    return t, d, lin[0]
    return None


def _emit(graph, user, size_node, image):
    """Nodes before ``user`` computing the value of ``size_node`` from a tensor ``user`` reads."""
    expr = size_node.meta["val"].node.expr
    sym = next(iter(expr.free_symbols))
    lin = _linear(expr, sym)
    src = _batch_source(user, sym, image)
    if lin is None or src is None:
        raise ExportError(f"the size {expr} (node {size_node.name}) depends on the batch in a way mesc cannot "
                          "recompute in each segment; export without --dynamic-batch")
    a, b = lin
    t, d, c = src
    with graph.inserting_before(user):
        s = graph.call_method("size", (t, d))
        if c != 1:
            s = graph.call_function(operator.floordiv, (s, c))
        if a != 1:
            s = graph.call_function(operator.mul, (s, a))
        if b:
            s = graph.call_function(operator.add, (s, b))
    return s


def _as_python_call(node) -> None:
    """Call ``node``'s aten op through its Tensor method or torch function of the same name."""
    if not isinstance(node.target, torch._ops.OpOverload):
        return
    name = node.target.overloadpacket.__name__
    first = node.args[0] if node.args else None
    if isinstance(first, fx.Node) and isinstance(first.meta.get("val"), torch.Tensor) and hasattr(torch.Tensor, name):
        node.op, node.target = "call_method", name
    elif hasattr(torch, name):
        node.target = getattr(torch, name)
    else:
        raise ExportError(f"{node.target} reads a size that follows the batch and has no Tensor method or torch "
                          "function to export it with a dynamic batch; export without --dynamic-batch")


def recompute_batch_sizes(gm) -> None:
    """Give every tensor op that reads a batch-derived size its own copy of that size."""
    graph = gm.graph
    image = next(n for n in graph.nodes if n.op == "placeholder")
    for node in list(graph.nodes):
        if node.op != "call_function" or not _reads_tensor(node):
            continue
        if not any(_symbolic(a) for a in node.all_input_nodes):
            continue

        def local(a, node=node):
            return _emit(graph, node, a, image) if _symbolic(a) else a

        node.args = fx.node.map_arg(node.args, local)
        node.kwargs = fx.node.map_arg(node.kwargs, local)
        _as_python_call(node)
    graph.eliminate_dead_code()
    gm.recompile()
