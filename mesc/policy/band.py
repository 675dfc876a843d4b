"""The semantic edge band, the reflect padding and the window filters of the MESS policy, numpy
only (rules in :mod:`mesc.policy.mess`).

The band is one of :data:`EDGE_BANDS`: ``"paper"``, the MESS paper's Eq. 8 (label edges grown
by os), or ``"wide"``, a label change within a (2*os+1)^2 window (about twice as wide), what
packages written before the manifest key existed compiled: a policy without ``"band"`` means
``"wide"`` (:func:`edge_band_of`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mesc.errors import MescError

EDGE_BANDS = ("paper", "wide")
LEGACY_EDGE_BAND = "wide"

# Band medians are gathered in chunks of this many pixels so that the explicit reference stays
# in tens of MB even for 512 x 1024 images with 33 x 33 windows (1089 values per pixel).
_MEDIAN_CHUNK = 4096


def edge_band_of(policy: dict) -> str:
    """The edge band an exit's policy settings name; packages without the key are older than it
    and compiled the wide band."""
    return policy.get("band", LEGACY_EDGE_BAND)


def check_stride(stride) -> int:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise MescError(f"stride (the exit's output stride) must be a positive int, got {stride!r}")
    return int(stride)


def check_edge_band(band) -> str:
    if band not in EDGE_BANDS:
        raise MescError(f"band (the semantic edge band) must be one of {EDGE_BANDS}, got {band!r}")
    return band


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
    change within the (2*os+1)^2 window (see :mod:`mesc.policy.mess`)."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 3:
        raise MescError(f"labels must be an N x H x W array, got {getattr(labels, 'shape', type(labels).__name__)}")
    r = check_stride(stride)
    if check_edge_band(band) == "wide":
        return _label_change(labels, r)
    edges = _label_change(labels, 1)
    grow = (r + 1) // 2 - 1
    k = 2 * grow + 1
    return sliding_window_view(reflect_pad(edges, grow), (k, k), axis=(1, 2)).any(axis=(-2, -1))


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


__all__ = ["EDGE_BANDS", "LEGACY_EDGE_BAND", "band_radius", "box_sum", "check_edge_band", "check_stride",
           "edge_band", "edge_band_fast", "edge_band_of", "median_filter", "reflect_pad"]
