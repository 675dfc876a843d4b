"""The exit policy as ONNX nodes in an exit head: one builder per policy kind that runs in the
graph, registered by kind (:mod:`.registry`), next to the numpy kinds of :mod:`mesc.policy`.

- :mod:`.builder`: :class:`GraphBuilder`, the public node builder every kind's graph uses;
- :mod:`.graph`: the head checks and the pieces kinds share (labels, softmax, confidences),
  :func:`append_score` (the skeleton of a kind that scores an image without a pixel
  threshold), :func:`append_labels` and :func:`strip_policy`;
- :mod:`.mess`, :mod:`.mean`, :mod:`.fft`, :mod:`.learned`: the built-in kinds' builders;
- :mod:`.compile`: rewriting a package's heads with another kind (``mesc calibrate --write``);
- :mod:`.pooling`: which of MESS's two window forms (``shift``/``pool``) a head gets per target.

Ops: those TensorRT 8.5+ and ONNX Runtime run (see :mod:`.mess`), plus MatMul, Sqrt, Relu,
Sigmoid, Concat, Squeeze for the score kinds.
"""

from __future__ import annotations

from mesc.exporters.policy.builder import GraphBuilder
from mesc.exporters.policy.graph import (MIN_OPSET, HeadLogits, append_labels, append_score, check_graph,
                                         strip_policy)
from mesc.exporters.policy.registry import (append_kind, builder_for, has_builder, in_graph_kinds, register_builder,
                                            unregister_builder)
from mesc.exporters.policy import fft, learned, mean, mess  # noqa: F401,E402  (each registers its builder)
from mesc.exporters.policy.fft import dft_matrices  # noqa: E402
from mesc.exporters.policy.mess import POOLINGS, append_policy  # noqa: E402

__all__ = ["GraphBuilder", "HeadLogits", "MIN_OPSET", "POOLINGS", "append_kind", "append_labels", "append_policy",
           "append_score", "builder_for", "check_graph", "dft_matrices", "has_builder", "in_graph_kinds",
           "register_builder", "strip_policy", "unregister_builder"]
