"""The in-graph builder of the ``mean_margin`` kind (:mod:`margin_kind`): TopK (k=2) of the
class probabilities, the first minus the second, ReduceMean over the image."""

import numpy as np
from onnx import helper

from mesc.exporters.policy import append_score, register_builder, unregister_builder

NAME = "mean_margin"


def _score(b, head, out):
    """b: the GraphBuilder; head: the HeadLogits; ``out``: the image score's name (N)."""
    node = b.name("TopK")
    values = node + ":0"
    b.nodes.append(helper.make_node("TopK", [head.probabilities(), b.const("k", [2], np.int64)],
                                    [values, node + ":1"], name=node, axis=1))

    def take(i):
        return b.op("Slice", [values, b.const("start", [i], np.int64), b.const("end", [i + 1], np.int64),
                              b.const("axis", [1], np.int64)])

    b.reduce("ReduceMean", b.op("Sub", [take(0), take(1)]), [1, 2, 3], keepdims=0, out=out)


def build(model, logits, prefix, policy, labels=True, net=None):
    return append_score(model, logits, prefix, _score, labels)


def register() -> None:
    register_builder(NAME, build)


def unregister() -> None:
    unregister_builder(NAME)
