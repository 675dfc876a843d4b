"""The fallback capture: ``torch.fx.symbolic_trace`` of the model (``--capture fx``).

It records module calls as ``call_module`` nodes and Python shape arithmetic as nodes on
proxies, which the caller folds at the export shape. It cannot unpack shapes, index with
proxies or branch on them; :mod:`mesc.exporters.capture_export` captures those models.
"""

from __future__ import annotations

from mesc.exporters.capture_errors import capture_error
from mesc.lazy import require

torch = require("torch", purpose="tracing a PyTorch model")
fx = torch.fx


class _PathTracer(fx.Tracer):
    """Remembers which submodule was being traced, to name it when tracing fails."""

    def __init__(self):
        super().__init__()
        self.stack = []

    def call_module(self, m, forward, args, kwargs):
        self.stack.append(f"{self.path_of_module(m)} ({type(m).__name__})")
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()


def capture_fx(model):
    """The model's fx GraphModule and its returned structure of output nodes."""
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:
        module = tracer.stack[-1] if tracer.stack else f"the model's forward ({type(model).__name__})"
        raise capture_error(err, "fx", module) from err
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    return gm, out_node.args[0]
