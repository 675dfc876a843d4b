"""The mean per-pixel confidence kinds, ``mean_top1`` and ``mean_entropy`` (the thesis'
baselines): the image leaves when the mean of its top-1 (or entropy) confidence map reaches
``th_img``. The in-graph twin: :mod:`mesc.exporters.policy.mean`."""

from __future__ import annotations

from mesc.policy.base import ThresholdPolicy
from mesc.policy.confidence import check_confidence_kind, mean_confidence
from mesc.policy.registry import PolicyKind, register_kind


class MeanConfidencePolicy(ThresholdPolicy):
    """Exit when the image's mean per-pixel confidence reaches ``th``."""

    def __init__(self, kind: str = "top1", th: float | None = None):
        super().__init__(th=th)
        self.kind = check_confidence_kind(kind)
        self.name = f"mean_{kind}"

    def score(self, logits):
        return mean_confidence(logits, self.kind)


def _kind(confidence: str) -> PolicyKind:
    return register_kind(PolicyKind(
        f"mean_{confidence}",
        # a mean confidence of exactly 1.0 needs saturated float32 logits; every mean is >= 0
        never_exit={"th_img": 1.0}, always_exit={"th_img": 0.0},
        reference=lambda logits, policy, net=None: mean_confidence(logits, confidence),
        memo_score=lambda s: s.confidence(confidence).mean(axis=(-2, -1)),
        factory=lambda **kw: MeanConfidencePolicy(confidence, **kw),
        summary=f"the mean per-pixel {confidence} confidence, >= th_img"))


TOP1 = _kind("top1")
ENTROPY = _kind("entropy")

__all__ = ["ENTROPY", "MeanConfidencePolicy", "TOP1"]
