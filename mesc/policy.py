"""Exit policies: the MESS image-level confidence (numpy reference) and the baselines.

Everything here is numpy only, so the runtime and the calibration search can use it without
torch or onnx. The in-graph twin of the MESS policy is :mod:`mesc.exporters.policy_graph`; the
two must agree bit for bit on the per-pixel decisions, so both follow the rules below.

MESS image confidence, for one exit's logits (N x M x H x W):

1. per-pixel confidence ``c``: ``"top1"`` = max softmax probability, or ``"entropy"`` =
   ``1 - H(p) / log M`` with ``H(p) = -sum p log p`` (natural log);
2. predicted labels = ``argmax`` over classes of the *logits*; ties go to the first maximal
   index (``np.argmax``; ONNX ``ArgMax`` with ``select_last_index=0``);
3. semantic edge band ``M`` (``os`` = the exit's output stride), one of :data:`EDGE_BANDS`:

   * ``"paper"`` (the default), the MESS paper's Eq. 8, ``M = morph(cannyEdge(labels), os)``:
     the label edges ``E`` (pixels whose 3 x 3 neighbourhood holds another label: Canny on a
     piecewise-constant map fires where the label changes, here on both sides of the change so
     that no side or direction is preferred) grown by a square of side ``2*ceil(os/2) - 1``
     (the paper's os x os kernel made odd, so that it is centred). A straight label edge gets
     a band ``2*ceil(os/2)`` pixels wide: ``os`` for the even strides of real networks. The
     same set is the pixels whose ``(2*ceil(os/2) + 1)^2`` window holds more than one label
     (a window of radius r+1 with two labels holds two adjacent pixels that differ, and both
     lie in the 3 x 3 neighbourhood of a pixel within radius r), which is how the fast path
     and the graph compute it; :func:`edge_band` grows the edges explicitly;
   * ``"wide"``: pixels whose ``(2*os+1)^2`` window holds more than one label, about ``2*os``
     wide; packages compiled before the choice existed use it (:func:`mesc.package.manifest.edge_band_of`);
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

Policies share one small interface (:class:`ExitPolicy`): ``score(logits) -> (N,)`` and
``decide(scores, **thresholds) -> (N,) bool``; a registry maps names to factories so a user can
plug in their own::

    from mesc.policy import ExitPolicy, register_policy, get_policy

    class MyPolicy(ExitPolicy):
        name = "mine"
        threshold_names = ("th",)
        def __init__(self, th=0.5):
            super().__init__(th=th)
        def score(self, logits):
            return mean_confidence(logits, "top1")
        def decide(self, scores, **thresholds):
            return self._scores(scores) >= self._thresholds(thresholds)["th"]

    register_policy("mine", MyPolicy)
    policy = get_policy("mine", th=0.8)

A learned decision network exported to ONNX is one call away: ``get_policy("onnx",
path="decider.onnx")`` (:class:`OnnxDecisionPolicy`, onnxruntime loaded on first use).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mesc.package.manifest import CONFIDENCE_KINDS, EDGE_BANDS, edge_band_of
from mesc.errors import MescError

LOGITS_SHAPE = "N x M x H x W (float32)"

# Band medians are gathered in chunks of this many pixels so that the explicit reference stays
# in tens of MB even for 512 x 1024 images with 33 x 33 windows (1089 values per pixel).
_MEDIAN_CHUNK = 4096


# ----------------------------------------------------------------------------------------------
# input checks

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


def check_stride(stride) -> int:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise MescError(f"stride (the exit's output stride) must be a positive int, got {stride!r}")
    return int(stride)


def check_edge_band(band) -> str:
    if band not in EDGE_BANDS:
        raise MescError(f"band (the semantic edge band) must be one of {EDGE_BANDS}, got {band!r}")
    return band


def check_confidence_kind(kind) -> str:
    if kind not in CONFIDENCE_KINDS:
        raise MescError(f"confidence must be one of {CONFIDENCE_KINDS}, got {kind!r}")
    return kind


def _check_threshold(name, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MescError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise MescError(f"{name} must be finite, got {value!r}")
    return v


# ----------------------------------------------------------------------------------------------
# the MESS reference

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


def reflect_pad(x: np.ndarray, radius: int) -> np.ndarray:
    """Pad the last two axes by ``radius`` with repeated reflection (the documented border rule)."""
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
    return np.pad(x, pad, mode="reflect")


def band_radius(stride: int, band: str = "paper") -> int:
    """R such that the edge band is the pixels whose (2R+1)^2 window holds more than one label:
    ``ceil(os/2)`` for the paper's band, ``os`` for the wide one."""
    r = check_stride(stride)
    return (r + 1) // 2 if check_edge_band(band) == "paper" else r


def _label_change(labels: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2*radius+1)^2 window holds more than one label, by explicit windows."""
    k = 2 * radius + 1
    win = sliding_window_view(reflect_pad(labels, radius), (k, k), axis=(1, 2))
    return win.max(axis=(-2, -1)) != win.min(axis=(-2, -1))


def edge_band(labels: np.ndarray, stride: int, band: str = "paper") -> np.ndarray:
    """Semantic edge band (N x H x W, bool) of the label maps, as its definition reads: for
    ``"paper"`` the 3x3 label edges grown by a (2*ceil(os/2)-1)^2 square, for ``"wide"`` a label
    change within the (2*os+1)^2 window (see the module notes)."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 3:
        raise MescError(f"labels must be an N x H x W array, got {getattr(labels, 'shape', type(labels).__name__)}")
    r = check_stride(stride)
    if check_edge_band(band) == "wide":
        return _label_change(labels, r)
    edges = _label_change(labels, 1)
    grow = (r + 1) // 2 - 1
    k = 2 * grow + 1
    return sliding_window_view(reflect_pad(edges, grow), (k, k), axis=(1, 2)).any(axis=(-2, -1))


def median_filter(conf: np.ndarray, radius: int, where: np.ndarray | None = None) -> np.ndarray:
    """Median of ``conf`` (N x H x W) over (2*radius+1)^2 windows, reflect-padded.

    Written as an explicit ``np.median`` over windows: it is the reference the in-graph
    indicator trick is tested against. ``where`` (bool, N x H x W) limits the work to those
    pixels; the others keep their value.
    """
    if not isinstance(conf, np.ndarray) or conf.ndim != 3:
        raise MescError(f"conf must be an N x H x W array, got {getattr(conf, 'shape', type(conf).__name__)}")
    k = 2 * radius + 1
    win = sliding_window_view(reflect_pad(conf, radius), (k, k), axis=(1, 2))  # view, no copy
    out = conf.copy()
    idx = np.nonzero(np.ones(conf.shape, bool) if where is None else where)
    for s in range(0, idx[0].size, _MEDIAN_CHUNK):
        sel = tuple(i[s:s + _MEDIAN_CHUNK] for i in idx)
        out[sel] = np.median(win[sel].reshape(-1, k * k), axis=1)
    return out


def mess_pixel_indicator(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                         stride: int = 8, band: str = "paper") -> np.ndarray:
    """1(c_enhanced >= th_pix) per pixel (N x H x W, bool), via the explicit median."""
    th_pix = _check_threshold("th_pix", th_pix)
    conf = pixel_confidence(logits, confidence)
    if edge:
        r = check_stride(stride)
        conf = median_filter(conf, 2 * r, where=edge_band(predicted_labels(logits), r, band))
    return conf >= th_pix


def mess_confidence(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                    stride: int = 8, band: str = "paper") -> np.ndarray:
    """c_img per image (N,), float64: the fraction of pixels whose enhanced confidence >= th_pix."""
    return mess_pixel_indicator(logits, th_pix, confidence, edge, stride, band).mean(axis=(1, 2))


def box_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """Sum over (2r+1)^2 reflect-padded windows of the last two axes, by cumulative sums
    (separable, O(1) a pixel; exact on integer counts)."""
    k = 2 * radius + 1
    p = reflect_pad(x, radius)
    for axis in (-2, -1):
        c = np.cumsum(p, axis=axis)
        c = np.concatenate([np.zeros_like(c.take([0], axis=axis)), c], axis=axis)
        n = c.shape[axis] - k
        p = c.take(np.arange(k, k + n), axis=axis) - c.take(np.arange(n), axis=axis)
    return p


def edge_band_fast(labels: np.ndarray, stride: int, band: str = "paper") -> np.ndarray:
    """:func:`edge_band` as a label change within the (2R+1)^2 window (:func:`band_radius`), by
    separable max/min filters over the last two axes (the max over a square window is the max
    of its rows' maxima): the same band, O(R) a pixel, not O(R^2)."""
    r = band_radius(stride, band)
    k = 2 * r + 1
    p = reflect_pad(np.asarray(labels, dtype=np.int32), r)
    rows = sliding_window_view(p, k, axis=-2)
    mx = sliding_window_view(rows.max(-1), k, axis=-1).max(-1)
    mn = sliding_window_view(rows.min(-1), k, axis=-1).min(-1)
    return mx != mn


def mess_confidence_fast(logits, th_pix: float, confidence: str = "top1", edge: bool = True,
                         stride: int = 8, band: str = "paper") -> np.ndarray:
    """Same value as :func:`mess_confidence`, without sorting: for an odd window,
    1(median(w) >= t) == 1(mean(1(w >= t)) >= 0.5), and box sums of integer counts are exact.
    For host-side evaluation (calibration search, the benchmark's host alternative)."""
    th_pix = _check_threshold("th_pix", th_pix)
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
    th_img = _check_threshold("th_img", th_img)
    return mess_confidence(logits, th_pix, confidence, edge, stride, band) >= th_img


def mean_confidence(logits, kind: str = "top1") -> np.ndarray:
    """Mean per-pixel confidence per image (N,)."""
    return pixel_confidence(logits, kind).mean(axis=(1, 2))


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


# ----------------------------------------------------------------------------------------------
# the policy interface and registry

class ExitPolicy:
    """Base of all exit policies.

    ``score(logits) -> (N,)`` maps one exit's logits to one number per image; ``decide(scores,
    **thresholds) -> (N,) bool`` turns scores into exit decisions. Thresholds not passed to
    ``decide`` come from ``params`` (the values given at construction).
    """

    name: str = "base"
    threshold_names: tuple = ()

    def __init__(self, **params):
        self.params = dict(params)

    def score(self, logits) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def decide(self, scores, **thresholds) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, logits, **thresholds) -> np.ndarray:
        return self.decide(self.score(logits), **thresholds)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # helpers for subclasses
    def _thresholds(self, given: dict) -> dict:
        unknown = set(given) - set(self.threshold_names)
        if unknown:
            raise MescError(f"policy {self.name!r} takes thresholds {list(self.threshold_names)}, "
                            f"got unknown {sorted(unknown)}")
        out = {}
        for key in self.threshold_names:
            value = given.get(key, self.params.get(key))
            if value is None:
                raise MescError(f"policy {self.name!r} needs threshold {key!r} (pass it to decide or at construction)")
            out[key] = _check_threshold(key, value)
        return out

    @staticmethod
    def _scores(scores) -> np.ndarray:
        s = np.asarray(scores)
        if s.ndim != 1 or not np.issubdtype(s.dtype, np.number):
            raise MescError(f"scores must be a numeric array of shape (N,), got shape {s.shape} dtype {s.dtype}")
        return s


class MessPolicy(ExitPolicy):
    """MESS: edge-enhanced fraction of confident pixels (scores depend on ``th_pix``)."""

    name = "mess"
    threshold_names = ("th_img",)

    def __init__(self, th_pix: float = 0.9, th_img: float | None = None, confidence: str = "top1",
                 edge: bool = True, stride: int = 8, band: str = "paper"):
        super().__init__(th_pix=_check_threshold("th_pix", th_pix), th_img=th_img,
                         confidence=check_confidence_kind(confidence), edge=bool(edge),
                         stride=check_stride(stride), band=check_edge_band(band))

    def score(self, logits, th_pix: float | None = None) -> np.ndarray:
        """c_img per image; ``th_pix`` overrides the constructed one (for threshold sweeps)."""
        p = self.params
        return mess_confidence_fast(logits, p["th_pix"] if th_pix is None else th_pix,
                                    p["confidence"], p["edge"], p["stride"], p["band"])

    def decide(self, scores, **thresholds):
        return self._scores(scores) >= self._thresholds(thresholds)["th_img"]


class MeanConfidencePolicy(ExitPolicy):
    """Exit when the image's mean per-pixel confidence reaches ``th``."""

    threshold_names = ("th",)

    def __init__(self, kind: str = "top1", th: float | None = None):
        super().__init__(th=th)
        self.kind = check_confidence_kind(kind)
        self.name = f"mean_{kind}"

    def score(self, logits):
        return mean_confidence(logits, self.kind)

    def decide(self, scores, **thresholds):
        return self._scores(scores) >= self._thresholds(thresholds)["th"]


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


class OnnxDecisionPolicy(ExitPolicy):
    """A learned decision network: an ONNX model from logits (N x M x H x W) to one score per
    image ((N,) or (N, 1)), run with onnxruntime on the CPU; exit when score >= ``th``.
    The session is created on first use, so constructing the policy costs nothing."""

    name = "onnx"
    threshold_names = ("th",)

    def __init__(self, path, th: float = 0.5, providers=None):
        super().__init__(path=str(path), th=th)
        self._providers = providers or ["CPUExecutionProvider"]
        self._session = None

    def _get_session(self):
        if self._session is None:
            from pathlib import Path

            from mesc.lazy import require

            if not Path(self.params["path"]).is_file():
                raise MescError(f"decision network {self.params['path']!r} does not exist")
            ort = require("onnxruntime", purpose="the ONNX decision policy")
            self._session = ort.InferenceSession(self.params["path"], providers=self._providers)
            if len(self._session.get_inputs()) != 1:
                raise MescError(f"decision network {self.params['path']!r} must take one input (the logits), "
                                f"has {[i.name for i in self._session.get_inputs()]}")
        return self._session

    def score(self, logits):
        logits = check_logits(logits)
        sess = self._get_session()
        out = np.asarray(sess.run(None, {sess.get_inputs()[0].name: logits.astype(np.float32)})[0])
        if out.shape not in ((logits.shape[0],), (logits.shape[0], 1)):
            raise MescError(f"decision network output must have shape (N,) or (N, 1) with N={logits.shape[0]}, "
                            f"got {out.shape}")
        return out.reshape(-1)

    def decide(self, scores, **thresholds):
        return self._scores(scores) >= self._thresholds(thresholds)["th"]


_REGISTRY: dict = {}


def register_policy(name: str, factory, overwrite: bool = False) -> None:
    """Register ``factory(**params) -> ExitPolicy`` (usually the class) under ``name``."""
    if not isinstance(name, str) or not name:
        raise MescError(f"policy name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise MescError(f"policy factory for {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise MescError(f"policy {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = factory


def get_policy(name: str, **params) -> ExitPolicy:
    """Instantiate the policy registered as ``name`` with ``params``."""
    if name not in _REGISTRY:
        raise MescError(f"unknown exit policy {name!r}; registered: {list_policies()}")
    return _REGISTRY[name](**params)


def list_policies() -> list:
    return sorted(_REGISTRY)


register_policy("mess", MessPolicy)
register_policy("mean_top1", lambda **kw: MeanConfidencePolicy("top1", **kw))
register_policy("mean_entropy", lambda **kw: MeanConfidencePolicy("entropy", **kw))
register_policy("fft", FftPolicy)
register_policy("onnx", OnnxDecisionPolicy)


# ----------------------------------------------------------------------------------------------
# the policy a package runs: one score per image on the host, and the exit test on it

def policy_kind(policy: dict) -> str:
    """The kind an exit's manifest policy runs (``"kind"``; packages from before kinds: MESS)."""
    return policy.get("kind", "mess")


def policy_scores(logits, policy: dict) -> np.ndarray:
    """One score per image (N,) of an exit's logits under its manifest policy: MESS's c_img at
    ``th_pix``, the mean per-pixel confidence, or the FFT magnitude. The learned decision
    network exists only in the exit's graph (its weights are compiled there)."""
    kind = policy_kind(policy)
    if kind == "mess":
        return mess_confidence_fast(logits, policy.get("th_pix", 0.9), confidence=policy.get("confidence", "top1"),
                                    edge=policy.get("edge", True), stride=policy.get("stride", 8),
                                    band=edge_band_of(policy))
    if kind in ("mean_top1", "mean_entropy"):
        return mean_confidence(logits, kind[len("mean_"):])
    if kind == "fft":
        return fft_magnitude(logits)
    raise MescError(f"the {kind} policy runs in the exit's graph only; it has no host implementation "
                    "(export the package with the in-graph policy)")


# thresholds under which (almost) no image leaves, per kind: MESS lets an image go only if every
# enhanced pixel has confidence exactly 1.0 (saturated float32 logits), the mean confidences
# likewise; the FFT range [-1, -1] holds no magnitude; a float32 sigmoid saturating to 1.0 can
# still pass the learned network's 1.0
NEVER_EXIT = {"mess": {"th_pix": 1.0, "th_img": 1.0}, "mean_top1": {"th_img": 1.0}, "mean_entropy": {"th_img": 1.0},
              "learned": {"th_img": 1.0}, "fft": {"lo": -1.0, "hi": -1.0}}


def exit_decision(scores, policy: dict) -> np.ndarray:
    """Which images (bool, N) leave, from their scores under an exit's manifest policy: the FFT
    policy when the score lies in [lo, hi], every other kind when score >= th_img."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if policy_kind(policy) == "fft":
        return (s >= policy["lo"]) & (s <= policy["hi"])
    return s >= policy["th_img"]


def _learned_policy(**params):
    from mesc.policy_learned import LearnedPolicy

    return LearnedPolicy(**params)


register_policy("learned", _learned_policy)
