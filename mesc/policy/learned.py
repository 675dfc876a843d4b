"""The learned exit policy (the thesis' auxiliary decision network), numpy reference.

A small network per exit reads what the exit head already computes, pooled over the image, and
predicts "this exit is good enough for this image"; the image leaves when its score reaches
``th_img``. Its input features (``FEATURES`` of them) per image:

* the fraction of pixels whose top-1 probability is >= each of ``TOP1_EDGES`` (a cumulative
  histogram of the confidence map),
* the fraction whose entropy confidence ``1 - H/log M`` is >= each of ``ENTROPY_EDGES``,
* the mean top-1 probability and the mean entropy confidence.

The network: ``sigmoid(relu(f @ w1 + b1) @ w2 + b2)``, the features' standardisation folded
into ``w1`` and ``b1``. Training is in :mod:`mesc.calibration.exits.decision`; the in-graph twin
(the same features and layers as ONNX nodes in the exit head) in
:mod:`mesc.exporters.policy.learned`. Numpy only, like all of :mod:`mesc.policy`.

The network's weights exist only in the exit's graph, so the runtime cannot score this kind on
the host (``host=False``) and calibration trains it from the memo's features (``trained``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesc.errors import MescError
from mesc.policy.base import ThresholdPolicy
from mesc.policy.confidence import check_logits, probability_confidence, softmax
from mesc.policy.registry import PolicyKind, register_kind

TOP1_EDGES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
ENTROPY_EDGES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
FEATURES = len(TOP1_EDGES) + len(ENTROPY_EDGES) + 2


def features_from_confidence(top1: np.ndarray, ent: np.ndarray) -> np.ndarray:
    """The decision features (N x FEATURES, float64) from the top-1 and entropy confidence
    maps (N x H x W each)."""
    n = top1.shape[0]
    t, e = top1.reshape(n, -1), ent.reshape(n, -1)
    cols = [(t >= edge).mean(1) for edge in TOP1_EDGES] + [(e >= edge).mean(1) for edge in ENTROPY_EDGES]
    return np.stack(cols + [t.mean(1), e.mean(1)], axis=1)


def decision_features(logits) -> np.ndarray:
    """The decision features (N x FEATURES) of one exit's logits (N x M x H x W)."""
    p = softmax(check_logits(logits))
    return features_from_confidence(probability_confidence(p, "top1"), probability_confidence(p, "entropy"))


@dataclass
class DecisionNet:
    """One exit's decision network: ``w1`` (FEATURES x K), ``b1`` (K), ``w2`` (K), ``b2``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def __post_init__(self):
        self.w1 = np.asarray(self.w1, dtype=np.float64)
        self.b1 = np.asarray(self.b1, dtype=np.float64).reshape(-1)
        self.w2 = np.asarray(self.w2, dtype=np.float64).reshape(-1)
        self.b2 = float(self.b2)
        k = self.b1.size
        if self.w1.shape != (FEATURES, k) or self.w2.shape != (k,) or not np.isfinite(
                np.concatenate([self.w1.ravel(), self.b1, self.w2, [self.b2]])).all():
            raise MescError(f"a decision network needs finite w1 ({FEATURES} x K), b1 (K), w2 (K) and b2; got "
                            f"w1 {self.w1.shape}, b1 {self.b1.shape}, w2 {self.w2.shape}")

    def logit(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != FEATURES:
            raise MescError(f"decision features must be N x {FEATURES}, got shape {f.shape}")
        return np.maximum(f @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def score(self, features: np.ndarray) -> np.ndarray:
        """P(good enough) per image (N,), from the features (N x FEATURES)."""
        return 1.0 / (1.0 + np.exp(-self.logit(features)))

    def to_dict(self) -> dict:
        return {"w1": self.w1.tolist(), "b1": self.b1.tolist(), "w2": self.w2.tolist(), "b2": self.b2}

    @classmethod
    def from_dict(cls, d: dict) -> "DecisionNet":
        try:
            return cls(d["w1"], d["b1"], d["w2"], d["b2"])
        except (KeyError, TypeError, ValueError) as err:
            raise MescError(f"not a decision network (expected w1, b1, w2, b2): {err}") from None


class LearnedPolicy(ThresholdPolicy):
    """The learned decision network as an :class:`~mesc.policy.ExitPolicy`: exit when the
    network's score >= ``th``."""

    name = "learned"

    def __init__(self, net: DecisionNet, th: float | None = None):
        if not isinstance(net, DecisionNet):
            raise MescError(f"net must be a DecisionNet, got {type(net).__name__}")
        super().__init__(th=th)
        self.net = net

    def score(self, logits):
        return self.net.score(decision_features(logits))


def _reference(logits, policy: dict, net=None) -> np.ndarray:
    if not isinstance(net, DecisionNet):
        raise MescError(f"the learned policy's score needs its DecisionNet, got {type(net).__name__}")
    return net.score(decision_features(logits))


KIND = register_kind(PolicyKind(
    "learned", host=False, trained=True,
    # a float32 sigmoid saturating to 1.0 can still pass 1.0; every sigmoid is >= 0
    never_exit={"th_img": 1.0}, always_exit={"th_img": 0.0},
    reference=_reference, factory=LearnedPolicy,
    summary="a small network on pooled confidence features (weights in the graph), >= th_img"))


__all__ = ["KIND", "DecisionNet", "LearnedPolicy", "ENTROPY_EDGES", "FEATURES", "TOP1_EDGES", "decision_features",
           "features_from_confidence"]
