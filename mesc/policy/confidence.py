"""Per-pixel confidences from one exit's logits (N x M x H x W), numpy only.

The shared first step of every policy kind: softmax over classes, the top-1 probability or the
entropy confidence ``1 - H(p) / log M`` (natural log), and the predicted labels (``argmax`` of
the *logits*, ties to the first maximal index as ``np.argmax`` and ONNX ``ArgMax`` with
``select_last_index=0``). :class:`Softmaxed` takes the softmax once for every score of an image.
"""

from __future__ import annotations

import numpy as np

from mesc.errors import MescError

LOGITS_SHAPE = "N x M x H x W (float32)"
# the per-pixel confidences of the MESS policy; the manifest's "confidence" key names one
CONFIDENCE_KINDS = ("top1", "entropy")


def check_logits(logits, name: str = "logits") -> np.ndarray:
    """Return ``logits`` as an array, or raise :class:`MescError` naming the expected shape."""
    if not isinstance(logits, np.ndarray):
        raise MescError(f"{name} must be a numpy array of shape {LOGITS_SHAPE}, got {type(logits).__name__}")
    if logits.ndim != 4:
        raise MescError(f"{name} must have shape {LOGITS_SHAPE}, got rank {logits.ndim} shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise MescError(f"{name} must be floating point, shape {LOGITS_SHAPE}, got dtype {logits.dtype}")
    if min(logits.shape) < 1:
        raise MescError(f"{name} must be non-empty, shape {LOGITS_SHAPE}, got {logits.shape}")
    return logits


def check_confidence_kind(kind) -> str:
    if kind not in CONFIDENCE_KINDS:
        raise MescError(f"confidence must be one of {CONFIDENCE_KINDS}, got {kind!r}")
    return kind


def check_threshold(name, value) -> float:
    """``value`` as a finite float, or the error naming the threshold."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MescError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise MescError(f"{name} must be finite, got {value!r}")
    return v


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes (axis 1), in float64 so the reference is the accurate side."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def pixel_confidence(logits, kind: str = "top1") -> np.ndarray:
    """Per-pixel confidence (N x H x W, float64): top-1 probability or 1 - H/log M."""
    logits = check_logits(logits)
    return probability_confidence(softmax(logits), kind)


def probability_confidence(p: np.ndarray, kind: str = "top1") -> np.ndarray:
    """:func:`pixel_confidence` from class probabilities (N x M x H x W, the softmax already
    taken), so that one softmax can serve both kinds."""
    check_confidence_kind(kind)
    if kind == "top1":
        return p.max(axis=1)
    m = p.shape[1]
    if m < 2:
        raise MescError(f"entropy confidence needs at least 2 classes, logits have shape {p.shape}")
    # p log p -> 0 as p -> 0; np.where keeps exp underflow (p == 0) from producing nan.
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return 1.0 + plogp.sum(axis=1) / np.log(m)


def predicted_labels(logits) -> np.ndarray:
    """Argmax over classes (N x H x W, int64); ties -> first maximal index."""
    return np.argmax(check_logits(logits), axis=1)


def mean_confidence(logits, kind: str = "top1") -> np.ndarray:
    """Mean per-pixel confidence per image (N,)."""
    return pixel_confidence(logits, kind).mean(axis=(1, 2))


class Softmaxed:
    """One softmax of an exit's logits and the confidences taken from it on first use, so that
    the calibration memo scores every kind of an image from a single softmax
    (:attr:`mesc.policy.registry.PolicyKind.memo_score`)."""

    def __init__(self, logits: np.ndarray):
        self.p = softmax(check_logits(logits))
        self._conf: dict = {}

    def confidence(self, kind: str) -> np.ndarray:
        """The per-pixel ``kind`` confidence (N x H x W)."""
        if kind not in self._conf:
            self._conf[kind] = probability_confidence(self.p, kind)
        return self._conf[kind]

    @property
    def top1(self) -> np.ndarray:
        return self.confidence("top1")

    @property
    def entropy(self) -> np.ndarray:
        return self.confidence("entropy")


__all__ = ["CONFIDENCE_KINDS", "LOGITS_SHAPE", "Softmaxed", "check_confidence_kind", "check_logits",
           "check_threshold", "mean_confidence", "pixel_confidence", "predicted_labels", "probability_confidence",
           "softmax"]
