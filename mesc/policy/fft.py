"""The FFT kind (the thesis' FFT strategy): the image leaves when the mean magnitude of the 2-D
FFT of its top-1 probability map lies in the calibrated range ``[lo, hi]``. The in-graph twin
(the DFT as MatMuls): :mod:`mesc.exporters.policy.fft`."""

from __future__ import annotations

import numpy as np

from mesc.policy.base import ExitPolicy
from mesc.policy.confidence import pixel_confidence
from mesc.policy.registry import PolicyKind, register_kind
from mesc.policy.settings import is_number


def fft_magnitude(logits) -> np.ndarray:
    """Mean magnitude of the 2-D FFT of the top-1 probability map, per image (N,).

    Taken on the max-softmax map (not one-hot labels: those lose the confidence and depend on
    the class numbering), with numpy's unnormalised forward FFT over (H, W) and the mean taken
    over all H*W coefficients, DC included. A constant map of value a scores exactly a; every
    spatial variation adds high-frequency magnitude.
    """
    return confidence_fft_magnitude(pixel_confidence(logits, "top1"))


def confidence_fft_magnitude(top1: np.ndarray) -> np.ndarray:
    """:func:`fft_magnitude` from the top-1 probability map (N x H x W)."""
    return np.abs(np.fft.fft2(top1, axes=(-2, -1))).mean(axis=(-2, -1))


class FftPolicy(ExitPolicy):
    """Thesis' FFT strategy: exit when :func:`fft_magnitude` lies in the calibrated [lo, hi]."""

    name = "fft"
    threshold_names = ("lo", "hi")

    def __init__(self, lo: float | None = None, hi: float | None = None):
        super().__init__(lo=lo, hi=hi)

    def score(self, logits):
        return fft_magnitude(logits)

    def decide(self, scores, **thresholds):
        t = self._thresholds(thresholds)
        s = self._scores(scores)
        return (s >= t["lo"]) & (s <= t["hi"])


def _range_end(key: str):
    return lambda v: None if is_number(v) else f"{key} (the FFT policy's score range) must be a finite number, got {v!r}"


KIND = register_kind(PolicyKind(
    "fft", thresholds=("lo", "hi"), comparison="range",
    # [-1, -1] holds no magnitude; every magnitude is >= 0 and a float32 from the graph
    never_exit={"lo": -1.0, "hi": -1.0}, always_exit={"lo": 0.0, "hi": float(np.finfo(np.float32).max)},
    settings={"lo": _range_end("lo"), "hi": _range_end("hi")},
    reference=lambda logits, policy, net=None: fft_magnitude(logits),
    memo_score=lambda s: confidence_fft_magnitude(s.top1),
    factory=FftPolicy,
    summary="the mean 2-D FFT magnitude of the top-1 map, in [lo, hi]"))

__all__ = ["FftPolicy", "KIND", "confidence_fft_magnitude", "fft_magnitude"]
