"""The ``learned`` builder: the decision features of :mod:`mesc.policy.learned` (cumulative
histograms of the top-1 and entropy confidences as ReduceMean of GreaterOrEqual against
constant edges, and their means), then MatMul/Add/Relu/MatMul/Add/Sigmoid with the network's
weights, which exist only here (the runtime cannot score this kind on the host)."""

from __future__ import annotations

import numpy as np

from mesc.errors import MescError
from mesc.exporters.policy.builder import GraphBuilder
from mesc.exporters.policy.graph import append_score
from mesc.exporters.policy.registry import register_builder
from mesc.policy.learned import ENTROPY_EDGES, TOP1_EDGES, DecisionNet


def _decision_features(b: GraphBuilder, top1: str, ent: str) -> str:
    """N x FEATURES: the fractions of pixels at or above each edge, then the two means."""
    cols = []
    for conf, edges in ((top1, TOP1_EDGES), (ent, ENTROPY_EDGES)):
        above = b.as_float(b.op("GreaterOrEqual", [conf, b.const("edges", np.reshape(edges, (1, -1, 1, 1)),
                                                                   np.float32)]))
        cols.append(b.reduce("ReduceMean", above, [2, 3], keepdims=0))  # N, K
    cols += [b.reduce("ReduceMean", c, [2, 3], keepdims=0) for c in (top1, ent)]  # N, 1 each
    return b.op("Concat", cols, axis=1)


def _decision_network(b: GraphBuilder, feats: str, net, out: str) -> None:
    hidden = b.op("Relu", [b.op("Add", [b.op("MatMul", [feats, b.const("w1", net.w1, np.float32)]),
                                        b.const("b1", net.b1, np.float32)])])
    logit = b.op("Add", [b.op("MatMul", [hidden, b.const("w2", net.w2.reshape(-1, 1), np.float32)]),
                         b.const("b2", [net.b2], np.float32)])
    b.op("Squeeze", [b.op("Sigmoid", [logit]), b.const("axes", [1], np.int64)], out=out)


def build(model, logits, prefix, policy, labels=True, net=None):
    if not isinstance(net, DecisionNet):
        raise MescError(f"the learned policy of {prefix} needs its DecisionNet, got {type(net).__name__}")

    def score(b, head, out):
        _decision_network(b, _decision_features(b, head.confidence("top1"), head.confidence("entropy")), net, out)

    return append_score(model, logits, prefix, score, labels)


register_builder("learned", build)

__all__ = ["build"]
