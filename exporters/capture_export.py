"""The default capture: ``torch.export.export`` of the model at the export shape.

torch.export runs the forward with fake tensors (non-strict: as plain Python, so shape
unpacking, ``x.view(*shape)`` and dicts of intermediate states are captured as they run) and
returns an ATen-level graph. ``ep.module()`` gives it back as an fx GraphModule whose get_attr
nodes read the weights, so the partition and the per-segment export take it like the fx
capture's graph. Under ``--dynamic-batch`` the batch dimension is a ``torch.export.Dim``; the
shape arithmetic that depends on it stays symbolic (see :mod:`mesc.exporters.symbolic_batch`).
"""

from __future__ import annotations

import contextlib

from mesc.exporters.capture_errors import capture_error
from mesc.exporters.torch_output import captured_output
from mesc.lazy import require

torch = require("torch", purpose="capturing a PyTorch model with torch.export")
fx = torch.fx


def capture_export(model, example, strict: bool = False, dynamic_batch: bool = False, verbose: bool = False):
    """The exported graph as a GraphModule and its returned structure of output nodes. What torch
    prints meanwhile (its graph on a failure) is shown only when ``verbose``."""
    shape = tuple(example.shape)
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specialises sizes 0 and 1; a batch of 2 keeps the batch symbolic
        if example.shape[0] < 2:
            example = example.expand(2, *example.shape[1:]).contiguous()
        dynamic_shapes = ({0: torch.export.Dim("batch")},)
    try:
        with contextlib.ExitStack() as stack:
            if not verbose:
                stack.enter_context(captured_output())
            ep = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as err:
        raise capture_error(err, "export", f"the model's forward ({type(model).__name__}) at input shape "
                            f"{shape}") from err
    gm = ep.module()
    out_spec = gm._out_spec
    for node in list(gm.graph.nodes):
        # the input-shape guards: the partition needs no call that reads the image and returns nothing
        if node.op == "call_module" and not node.users:
            gm.graph.erase_node(node)
    gm.graph._codegen = fx.graph.CodeGen()
    _name_after_modules(gm.graph)
    gm.recompile()
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    flat = out_node.args[0]
    result = torch.utils._pytree.tree_unflatten(list(flat) if isinstance(flat, (list, tuple)) else [flat], out_spec)
    return gm, result


def _name_after_modules(graph) -> None:
    """Prefix each op's node name with the module it ran in (``s1_2_relu``), as the fx capture
    names its call_module nodes: the cut tensors then say where they come from."""
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        path = list(stack.values())[-1][0]
        if path:
            node._rename(f"{path.replace('.', '_')}_{node.name}")
