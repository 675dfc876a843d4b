"""The MESS policy: the edge-enhanced fraction of confident pixels (numpy reference).

The in-graph twin is :mod:`mesc.exporters.policy.mess`; the two must agree bit for bit on the
per-pixel decisions, so both follow the rules below.

MESS image confidence, for one exit's logits (N x M x H x W):

1. per-pixel confidence ``c``: ``"top1"`` = max softmax probability, or ``"entropy"`` =
   ``1 - H(p) / log M`` with ``H(p) = -sum p log p`` (natural log);
2. predicted labels = ``argmax`` over classes of the *logits*; ties go to the first maximal
   index (``np.argmax``; ONNX ``ArgMax`` with ``select_last_index=0``);
3. semantic edge band ``M`` (``os`` = the exit's output stride), one of
   :data:`~mesc.policy.band.EDGE_BANDS`:

   * ``"paper"`` (the default), the MESS paper's Eq. 8, ``M = morph(cannyEdge(labels), os)``:
     the label edges ``E`` (pixels whose 3 x 3 neighbourhood holds another label: Canny on a
     piecewise-constant map fires where the label changes, here on both sides of the change so
     that no side or direction is preferred) grown by a square of side ``2*ceil(os/2) - 1``
     (the paper's os x os kernel made odd, so that it is centred). A straight label edge gets
     a band ``2*ceil(os/2)`` pixels wide: ``os`` for the even strides of real networks. The
     same set is the pixels whose ``(2*ceil(os/2) + 1)^2`` window holds more than one label
     (a window of radius r+1 with two labels holds two adjacent pixels that differ, and both
     lie in the 3 x 3 neighbourhood of a pixel within radius r), which is how the fast path
     and the graph compute it; :func:`~mesc.policy.band.edge_band` grows the edges explicitly;
   * ``"wide"``: pixels whose ``(2*os+1)^2`` window holds more than one label, about ``2*os``
     wide; packages compiled before the choice existed use it
     (:func:`~mesc.policy.band.edge_band_of`);
4. on the band, ``c`` is replaced by the median of ``c`` over the ``(4*os+1)^2`` window;
5. ``c_img`` = fraction of pixels with ``c >= th_pix``; the image exits iff ``c_img >= th_img``.

Border rule (windows near or larger than the image): the confidence map is extended by
*repeated reflection*, exactly ``np.pad(mode="reflect")`` -- the edge pixel is not repeated,
and a pad wider than the image keeps reflecting (index ``j`` reads pixel ``tri(j)``, the
triangle wave of period ``2*(size-1)``). Every window therefore keeps its full odd size
(4*os+1)^2 and the median is always the middle element. An axis of size 1 is replicated
(numpy does the same). For the edge band the rule does not matter: a window over a reflected
image only ever holds values of the clamped window ``[i-R, i+R] ∩ [0, size)``, so "label
differs within the window" and "an edge pixel within the window" are the same with or without
reflection.
"""

from __future__ import annotations

import numpy as np

from mesc.policy.band import (EDGE_BANDS, box_sum, check_edge_band, check_stride, edge_band, edge_band_fast,
                              edge_band_of, median_filter)
from mesc.policy.base import ExitPolicy
from mesc.policy.confidence import (CONFIDENCE_KINDS, check_confidence_kind, check_threshold, pixel_confidence,
                                    predicted_labels)
from mesc.policy.registry import PolicyKind, register_kind
from mesc.policy.settings import is_int, unit_threshold

# How the in-graph policy computes its windows (:mod:`mesc.exporters.policy.mess`): Slice +
# Add/Max doubling ("shift") or MaxPool/AveragePool ("pool"). Both give the same decisions; the
# manifest records the one a head was compiled with, absent meaning "shift" (what every package
# written before the key existed compiled, and what a mesc without the key reads).
POOLINGS = ("shift", "pool")
DEFAULT_POOLING = "shift"


def pooling_of(policy) -> str:
    """The window formulation an exit's MESS head was compiled with."""
    return policy.get("pooling", DEFAULT_POOLING)


def mess_pixel_indicator(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                         stride: int = 8, band: str = "paper") -> np.ndarray:
    """1(c_enhanced >= th_pix) per pixel (N x H x W, bool), via the explicit median."""
    th_pix = check_threshold("th_pix", th_pix)
    conf = pixel_confidence(logits, confidence)
    if edge:
        r = check_stride(stride)
        conf = median_filter(conf, 2 * r, where=edge_band(predicted_labels(logits), r, band))
    return conf >= th_pix


def mess_confidence(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                    stride: int = 8, band: str = "paper") -> np.ndarray:
    """c_img per image (N,), float64: the fraction of pixels whose enhanced confidence >= th_pix."""
    return mess_pixel_indicator(logits, th_pix, confidence, edge, stride, band).mean(axis=(1, 2))


def mess_confidence_fast(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                         stride: int = 8, band: str = "paper") -> np.ndarray:
    """Same value as :func:`mess_confidence`, without sorting: for an odd window,
    1(median(w) >= t) == 1(mean(1(w >= t)) >= 0.5), and box sums of integer counts are exact.
    For host-side evaluation (calibration search, the benchmark's host alternative)."""
    th_pix = check_threshold("th_pix", th_pix)
    mask = edge_band_fast(predicted_labels(logits), stride, band) if edge else None
    return mess_confidence_grid(pixel_confidence(logits, confidence), [th_pix], mask, stride)[0]


def mess_confidence_grid(conf: np.ndarray, th_pix_grid, band: np.ndarray | None = None,
                         stride: int = 8) -> np.ndarray:
    """c_img (G x N) at every ``th_pix`` of ``th_pix_grid`` from the per-pixel confidence
    ``conf`` (N x H x W) and the edge band (N x H x W bool; None: no edge enhancement), by the
    indicator rule of :func:`mess_confidence_fast`. Sweeping th_pix this way costs one box sum
    per grid value instead of one softmax and one band per value."""
    grid = np.asarray(th_pix_grid, dtype=np.float64)
    ind = conf[None] >= grid.reshape(-1, *[1] * conf.ndim)
    if band is not None and band.any():
        r = check_stride(stride)
        k = 4 * r + 1
        # int32 holds any window count, (4*os+1)^2, and halves the memory of a whole grid
        counts = box_sum(ind.astype(np.int32), 2 * r)
        ind = np.where(band[None], 2 * counts > k * k, ind)
    return ind.mean(axis=(-2, -1))


def mess_exit(logits, th_pix: float, th_img: float, confidence: str = "top1", edge: bool = True,
              stride: int = 8, band: str = "paper") -> np.ndarray:
    """Exit decision per image (N,), bool: c_img >= th_img."""
    th_img = check_threshold("th_img", th_img)
    return mess_confidence(logits, th_pix, confidence, edge, stride, band) >= th_img


def mess_band(policy: dict, labels: np.ndarray):
    """The edge band (N x H x W bool) an exit's MESS ``policy`` enhances on, None without edge
    enhancement."""
    return edge_band_fast(labels, policy.get("stride", 8), edge_band_of(policy)) if policy.get("edge", True) else None


class MessPolicy(ExitPolicy):
    """MESS: edge-enhanced fraction of confident pixels (scores depend on ``th_pix``)."""

    name = "mess"
    threshold_names = ("th_img",)

    def __init__(self, th_pix: float = 0.9, th_img: float | None = None, confidence: str = "top1",
                 edge: bool = True, stride: int = 8, band: str = "paper"):
        super().__init__(th_pix=check_threshold("th_pix", th_pix), th_img=th_img,
                         confidence=check_confidence_kind(confidence), edge=bool(edge),
                         stride=check_stride(stride), band=check_edge_band(band))

    def score(self, logits, th_pix: float | None = None) -> np.ndarray:
        """c_img per image; ``th_pix`` overrides the constructed one (for threshold sweeps)."""
        p = self.params
        return mess_confidence_fast(logits, p["th_pix"] if th_pix is None else th_pix,
                                    p["confidence"], p["edge"], p["stride"], p["band"])

    def decide(self, scores, **thresholds):
        return self._scores(scores) >= self._thresholds(thresholds)["th_img"]


def _reference(logits, policy: dict, net=None) -> np.ndarray:
    # the box-sum form: the same c_img as the explicit median, without sorting windows
    return mess_confidence_fast(logits, policy.get("th_pix", 0.9), confidence=policy.get("confidence", "top1"),
                                edge=policy.get("edge", True), stride=policy.get("stride", 8),
                                band=edge_band_of(policy))


KIND = register_kind(PolicyKind(
    "mess", thresholds=("th_pix", "th_img"), pixel_threshold=True,
    # an image leaves only if every enhanced pixel has confidence exactly 1.0 (saturated float32 logits)
    never_exit={"th_pix": 1.0, "th_img": 1.0}, always_exit={"th_pix": 0.9, "th_img": 0.0},
    settings={
        "confidence": lambda v: None if v in CONFIDENCE_KINDS else f"confidence must be one of {CONFIDENCE_KINDS}, "
                                                                   f"got {v!r}",
        "th_pix": unit_threshold("th_pix"),
        "stride": lambda v: None if is_int(v) and v >= 1 else f"stride must be a positive int, got {v!r}",
        "edge": lambda v: None if isinstance(v, bool) else f"edge must be true or false, got {v!r}",
        "band": lambda v: None if v in EDGE_BANDS else f"band must be one of {EDGE_BANDS}, got {v!r}",
        "pooling": lambda v: None if v in POOLINGS else f"pooling must be one of {POOLINGS}, got {v!r}",
    },
    reference=_reference, factory=MessPolicy,
    summary="the edge-enhanced fraction of pixels whose confidence >= th_pix, >= th_img"))

__all__ = ["DEFAULT_POOLING", "KIND", "MessPolicy", "POOLINGS", "mess_band", "mess_confidence", "mess_confidence_fast", "mess_confidence_grid",
           "mess_exit", "mess_pixel_indicator", "pooling_of"]
