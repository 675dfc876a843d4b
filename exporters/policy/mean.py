"""The ``mean_top1`` and ``mean_entropy`` builders: the per-pixel confidence of the MESS graph
(softmax written out), ReduceMean over the image. Numpy reference: :mod:`mesc.policy.mean`."""

from __future__ import annotations

from mesc.exporters.policy.graph import append_score
from mesc.exporters.policy.registry import register_builder


def _builder(confidence: str):
    def score(b, head, out):
        b.reduce("ReduceMean", head.confidence(confidence), [1, 2, 3], keepdims=0, out=out)

    def build(model, logits, prefix, policy, labels=True, net=None):
        return append_score(model, logits, prefix, score, labels)

    return build


for _confidence in ("top1", "entropy"):
    register_builder(f"mean_{_confidence}", _builder(_confidence))

__all__: list = []
