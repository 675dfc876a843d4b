"""The numpy exit policies: MESS reference, the median identity, border rule, baselines, registry."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesc.errors import MescError
from mesc.policy import (
    CONFIDENCE_KINDS,
    EDGE_BANDS,
    ExitPolicy,
    edge_band,
    edge_band_fast,
    fft_magnitude,
    get_policy,
    list_policies,
    mean_confidence,
    median_filter,
    mess_confidence,
    mess_confidence_fast,
    mess_confidence_grid,
    mess_exit,
    pixel_confidence,
    predicted_labels,
    register_policy,
)

from policy_cases import tied_logits

BOUNDED = settings(max_examples=40, deadline=None)


def _tri(j, n):
    """Repeated reflection written from its definition: triangle wave of period 2(n-1)."""
    if n == 1:
        return 0
    j = j % (2 * (n - 1))
    return 2 * (n - 1) - j if j > n - 1 else j


def _median_brute(conf, r):
    n, h, w = conf.shape
    out = np.empty_like(conf)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                rows = [_tri(a, h) for a in range(i - r, i + r + 1)]
                cols = [_tri(c, w) for c in range(j - r, j + r + 1)]
                out[b, i, j] = np.median(conf[b][np.ix_(rows, cols)])
    return out


@st.composite
def conf_maps(draw, max_side=12):
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**31))
    levels = draw(st.sampled_from([None, 3]))  # few levels -> many ties with the threshold
    rng = np.random.default_rng(seed)
    conf = rng.random((n, h, w)) if levels is None else rng.integers(0, levels, (n, h, w)) / levels
    return conf


@BOUNDED
@given(conf=conf_maps(), r=st.integers(0, 6), t=st.sampled_from([0.0, 1 / 3, 0.5, 2 / 3, 0.77, 1.0]))
def test_median_identity_matches_direct_median(conf, r, t):
    # 1(median(w) >= t) == 1(mean(1(w >= t)) >= 0.5) for an odd window, borders and all.
    direct = _median_brute(conf, r)
    assert np.array_equal(median_filter(conf, r), direct)
    k = 2 * r + 1
    padded = np.pad((conf >= t).astype(float), [(0, 0), (r, r), (r, r)], mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
    assert np.array_equal(direct >= t, win.mean(axis=(-2, -1)) >= 0.5)


@BOUNDED
@given(labels=st.integers(0, 2**31).map(lambda s: np.random.default_rng(s).integers(0, 3, (1, 1 + s % 9, 1 + s % 7))),
       r=st.integers(1, 8))
def test_edge_band_is_the_clamped_window(labels, r):
    # Reflection never brings in a label from outside the clamped window: the in-graph
    # MaxPool with implicit padding relies on this.
    _, h, w = labels.shape
    want = np.zeros(labels.shape, bool)
    for i in range(h):
        for j in range(w):
            win = labels[0, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            want[0, i, j] = win.max() != win.min()
    assert np.array_equal(edge_band(labels, r, "wide"), want)


def _paper_band_brute(labels, stride):
    """Eq. 8 written out: edge pixels (another label among the 8 neighbours inside the image),
    then every pixel within Chebyshev distance ceil(os/2) - 1 of an edge pixel."""
    _, h, w = labels.shape
    grow = math.ceil(stride / 2) - 1
    edges = np.zeros(labels.shape, bool)
    for b, i, j in np.ndindex(labels.shape):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if 0 <= i + di < h and 0 <= j + dj < w and labels[b, i + di, j + dj] != labels[b, i, j]:
                    edges[b, i, j] = True
    band = np.zeros(labels.shape, bool)
    for b, i, j in zip(*np.nonzero(edges)):
        band[b, max(0, i - grow):i + grow + 1, max(0, j - grow):j + grow + 1] = True
    return band


@st.composite
def label_maps(draw):
    """Label maps of blocks (so they have an interior as well as edges) or of single pixels,
    odd and even sizes down to 1 x 1."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n, h, w, block = draw(st.integers(1, 2)), draw(st.integers(1, 20)), draw(st.integers(1, 20)), draw(st.integers(1, 6))
    coarse = rng.integers(0, draw(st.integers(2, 4)), (n, h // block + 1, w // block + 1))
    return coarse.repeat(block, 1).repeat(block, 2)[:, :h, :w]


@BOUNDED
@given(labels=label_maps(), stride=st.integers(1, 9))
def test_paper_band_is_the_label_edges_grown_by_the_stride(labels, stride):
    want = _paper_band_brute(labels, stride)
    assert np.array_equal(edge_band(labels, stride, "paper"), want)
    assert np.array_equal(edge_band_fast(labels, stride, "paper"), want)
    assert np.array_equal(edge_band(labels, stride), want)  # the paper's band is the default
    # the wide band holds it (a window of radius os >= ceil(os/2))
    assert not (want & ~edge_band(labels, stride, "wide")).any()


@pytest.mark.parametrize("stride, paper, wide", [
    (1, [9, 10], [9, 10]),
    (2, [9, 10], list(range(8, 12))),
    (3, list(range(8, 12)), list(range(7, 13))),
    (4, list(range(8, 12)), list(range(6, 14))),
    (8, list(range(6, 14)), list(range(2, 18))),
])
def test_band_widths_across_a_straight_edge(stride, paper, wide):
    # labels 0 | 1 between columns 9 and 10: the paper's band is os wide (os + 1 for odd os,
    # the two sides of the change at os 1), the wide band 2 os
    labels = np.zeros((1, 5, 20), int)
    labels[..., 10:] = 1
    for band, want in (("paper", paper), ("wide", wide)):
        for fn in (edge_band, edge_band_fast):
            got = fn(labels, stride, band)
            assert (got == got[:, :1]).all(), "the same columns on every row"
            assert np.nonzero(got[0, 0])[0].tolist() == want, (fn.__name__, band)


def test_paper_band_at_the_image_border():
    # the change between columns 0 and 1: the edge is columns 0 and 1, grown by 3 at os 8,
    # and nothing comes from beyond the border
    labels = np.zeros((1, 4, 12), int)
    labels[..., 0] = 2
    for fn in (edge_band, edge_band_fast):
        assert np.nonzero(fn(labels, 8)[0, 0])[0].tolist() == [0, 1, 2, 3, 4]
    # a single row and a single pixel: no neighbour above or below, nothing to differ from
    assert edge_band(np.array([[[0, 0, 1, 1, 1, 1, 1]]]), 4).tolist() == [[[True, True, True, True, False, False, False]]]
    assert not edge_band(np.zeros((1, 1, 1), int), 8).any()


@BOUNDED
@given(labels=label_maps(), stride=st.integers(1, 9), band=st.sampled_from(EDGE_BANDS))
def test_bands_do_not_prefer_a_side(labels, stride, band):
    # mirrored or transposed labels give the mirrored or transposed band
    got = edge_band_fast(labels, stride, band)
    assert np.array_equal(edge_band_fast(labels[:, ::-1, ::-1], stride, band), got[:, ::-1, ::-1])
    assert np.array_equal(edge_band_fast(labels.transpose(0, 2, 1), stride, band), got.transpose(0, 2, 1))


def test_the_band_is_named_when_wrong():
    x = np.zeros((1, 2, 3, 3), np.float32)
    for call in (lambda: edge_band(np.zeros((1, 3, 3), int), 2, "canny"),
                 lambda: edge_band_fast(np.zeros((1, 3, 3), int), 2, "Paper"),
                 lambda: mess_confidence(x, 0.5, band="narrow"),
                 lambda: get_policy("mess", band=None)):
        with pytest.raises(MescError, match=r"band \(the semantic edge band\) must be one of \('paper', 'wide'\)"):
            call()


def test_the_band_changes_c_img():
    # confident (0.9) everywhere except a stripe of doubtful (0.55) pixels 3 columns right of a
    # label edge: the wide band at os 4 reaches the stripe (its median there is over confident
    # pixels), the paper's does not, so the stripe counts or not
    p = np.empty((1, 2, 8, 24))
    p[0, 0], p[0, 1] = 0.9, 0.1
    p[0, :, :, 12:] = [[[0.1]], [[0.9]]]
    p[0, :, :, 15] = [[0.45], [0.55]]
    x = _logits_from_probs(p)
    assert mess_confidence(x, 0.8, stride=4, band="wide")[0] == 1.0
    assert mess_confidence(x, 0.8, stride=4, band="paper")[0] == pytest.approx(1 - 8 / (8 * 24))
    for band in EDGE_BANDS:
        assert mess_confidence_fast(x, 0.8, stride=4, band=band) == mess_confidence(x, 0.8, stride=4, band=band)
        pol = get_policy("mess", th_pix=0.8, stride=4, band=band)
        assert pol.score(x) == mess_confidence(x, 0.8, stride=4, band=band)


@BOUNDED
@given(seed=st.integers(0, 2**31), stride=st.sampled_from([1, 2, 3, 4, 8]), kind=st.sampled_from(CONFIDENCE_KINDS),
       edge=st.booleans(), th=st.sampled_from([0.3, 0.5, 0.6, 0.9]), band=st.sampled_from(EDGE_BANDS))
def test_fast_path_equals_reference(seed, stride, kind, edge, th, band):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(1, 24)), int(rng.integers(1, 24)))
    logits = rng.integers(-1, 2, shape).astype(np.float32)  # ties in argmax and in confidence
    if rng.integers(2):  # blocks of 3: label regions with an interior, so the band is not everything
        logits = logits.repeat(3, 2).repeat(3, 3)[:, :, :shape[2], :shape[3]]
    assert np.array_equal(mess_confidence(logits, th, kind, edge, stride, band),
                          mess_confidence_fast(logits, th, kind, edge, stride, band))


@BOUNDED
@given(seed=st.integers(0, 2**31), stride=st.sampled_from([1, 2, 4]), kind=st.sampled_from(CONFIDENCE_KINDS),
       edge=st.booleans())
def test_grid_equals_reference_at_every_th_pix(seed, stride, kind, edge):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(1, 24)), int(rng.integers(1, 24)))
    logits = rng.integers(-1, 2, shape).astype(np.float32)
    grid = [0.3, 0.5, 0.6, 0.9]
    band = edge_band_fast(predicted_labels(logits), stride) if edge else None
    got = mess_confidence_grid(pixel_confidence(logits, kind), grid, band, stride)
    assert got.shape == (len(grid), shape[0])
    for g, th in enumerate(grid):
        assert np.array_equal(got[g], mess_confidence(logits, th, kind, edge, stride))


def _logits_from_probs(p):
    """Logits whose softmax is p (classes on axis 1)."""
    return np.log(np.asarray(p, np.float64)).astype(np.float32)


@pytest.mark.parametrize("edge", [True, False])
def test_values_at_the_thresholds_count(edge):
    # DESIGN: c_img = fraction of pixels with c >= th_pix; the image exits iff c_img >= th_img.
    x = tied_logits([3, 2, 8, 0])  # top-1 exactly 0.5 on 3, 2, 8 and 0 of 8 pixels
    assert (pixel_confidence(x) == 0.5).sum(axis=(1, 2)).tolist() == [3, 2, 8, 0]
    want = [3 / 8, 2 / 8, 1.0, 0.0]
    assert mess_confidence(x, 0.5, edge=edge, stride=1).tolist() == want
    assert mess_confidence_fast(x, 0.5, edge=edge, stride=1).tolist() == want
    exits = [True, False, True, False]
    assert mess_exit(x, 0.5, 3 / 8, edge=edge, stride=1).tolist() == exits
    pol = get_policy("mess", th_pix=0.5, th_img=3 / 8, edge=edge, stride=1)
    assert pol.decide(pol.score(x)).tolist() == exits


def test_mess_hand_case():
    # 3x3 image, centre pixel label 1 with p=0.75, the rest label 0 with p=0.9; os=1.
    p = np.empty((1, 2, 3, 3))
    p[0, 0], p[0, 1] = 0.9, 0.1
    p[0, :, 1, 1] = [0.25, 0.75]
    logits = _logits_from_probs(p)
    assert predicted_labels(logits)[0, 1, 1] == 1
    # Without edge enhancement: 8 of 9 pixels reach 0.8.
    assert mess_confidence(logits, 0.8, edge=False, stride=1)[0] == pytest.approx(8 / 9)
    # Every pixel is on the band (the 3x3 window always holds the centre). The 5x5 reflected
    # window holds the centre 4 (corner), 6 (side) or 9 (centre) times out of 25: the median is
    # 0.9 everywhere, so all pixels count.
    assert edge_band(predicted_labels(logits), 1).all()
    assert mess_confidence(logits, 0.8, edge=True, stride=1)[0] == 1.0
    assert mess_exit(logits, 0.8, 0.95, edge=False, stride=1).tolist() == [False]
    assert mess_exit(logits, 0.8, 0.95, edge=True, stride=1).tolist() == [True]
    pol = get_policy("mess", th_pix=0.8, th_img=0.95, stride=1)
    assert pol.decide(pol.score(logits)).tolist() == [True]
    assert pol.decide(pol.score(logits, th_pix=0.95)).tolist() == [False]


def test_mean_top1_and_mean_entropy_hand_cases():
    # pixel 0: p = (1/4, 3/4); pixel 1: p = (1/2, 1/2)
    logits = _logits_from_probs([[[[0.25, 0.5]], [[0.75, 0.5]]]])
    assert mean_confidence(logits, "top1")[0] == pytest.approx((0.75 + 0.5) / 2, abs=1e-7)
    h0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    want = ((1 - h0 / math.log(2)) + 0.0) / 2
    assert mean_confidence(logits, "entropy")[0] == pytest.approx(want, abs=1e-7)
    top1 = get_policy("mean_top1", th=0.6)
    assert top1.decide(top1.score(logits)).tolist() == [True]
    assert top1.decide(top1.score(logits), th=0.7).tolist() == [False]
    ent = get_policy("mean_entropy", th=0.1)
    assert ent.decide(ent.score(logits)).tolist() == [want >= 0.1]


def test_entropy_is_finite_when_probabilities_underflow():
    logits = np.array([[[[0.0]], [[-1e4]], [[-1e4]]]], np.float32)
    assert pixel_confidence(logits, "entropy")[0, 0, 0] == 1.0


def test_fft_hand_cases():
    # Uniform 2-class logits: the top-1 map is the constant 0.5, whose FFT is DC only: mean 0.5.
    assert fft_magnitude(np.zeros((1, 2, 4, 6), np.float32))[0] == pytest.approx(0.5)
    # 2x2 map [[1, .5], [.5, .5]] = 0.5 + 0.5*delta: DC 2.5, three coefficients of 0.5: mean 1.0.
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 0, 0, 0] = 100.0
    assert fft_magnitude(logits)[0] == pytest.approx(1.0)
    pol = get_policy("fft", lo=0.4, hi=0.9)
    scores = np.array([0.5, 1.0, 0.3])
    assert pol.decide(scores).tolist() == [True, False, False]
    assert pol.decide(scores, hi=1.0).tolist() == [True, True, False]


def test_registry_and_custom_policy():
    assert {"mess", "mean_top1", "mean_entropy", "fft", "learned"} <= set(list_policies())
    with pytest.raises(MescError, match="unknown exit policy 'nope'"):
        get_policy("nope")

    class Always(ExitPolicy):
        name = "always"
        threshold_names = ()

        def score(self, logits):
            return np.ones(len(logits))

        def decide(self, scores, **thresholds):
            self._thresholds(thresholds)
            return self._scores(scores) > 0

    register_policy("test-always", Always)
    try:
        assert get_policy("test-always")(np.zeros((2, 2, 1, 1), np.float32)).tolist() == [True, True]
        with pytest.raises(MescError, match="already registered"):
            register_policy("test-always", Always)
        register_policy("test-always", Always, overwrite=True)
    finally:
        from mesc.policy import unregister_kind

        unregister_kind("test-always")
    assert "test-always" not in list_policies()
    with pytest.raises(MescError, match="unknown"):
        get_policy("mean_top1", th=0.5).decide(np.ones(1), th_img=0.3)
    with pytest.raises(MescError, match="needs threshold 'th'"):
        get_policy("mean_top1").decide(np.ones(1))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 4), np.float32), "logits must have shape N x M x H x W"),
    (np.zeros((1, 2, 3, 4), np.int64), "logits must be floating point"),
    ([[1.0]], "logits must be a numpy array"),
])
def test_bad_logits_are_named(bad, match):
    with pytest.raises(MescError, match=match):
        mess_confidence(bad, 0.5)
    with pytest.raises(MescError, match=match):
        get_policy("fft").score(bad)


def test_bad_parameters():
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(MescError, match="stride"):
        mess_confidence(x, 0.5, stride=0)
    with pytest.raises(MescError, match="confidence must be one of"):
        mess_confidence(x, 0.5, confidence="max")
    with pytest.raises(MescError, match="th_pix must be a number"):
        mess_confidence(x, "high")
    with pytest.raises(MescError, match="at least 2 classes"):
        pixel_confidence(np.zeros((1, 1, 2, 2), np.float32), "entropy")
    with pytest.raises(MescError, match=r"scores must be a numeric array of shape \(N,\)"):
        get_policy("mess", th_img=0.5).decide(np.ones((2, 2)))


def test_policy_module_is_numpy_only():
    probe = ("import sys, mesc.policy; bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules];"
             "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr[-500:]


@pytest.mark.parametrize("band", EDGE_BANDS)
@pytest.mark.parametrize("stride", [1, 2, 3, 8])
def test_separable_edge_band_is_the_reference_band(stride, band):
    from mesc import policy

    rng = np.random.default_rng(stride)
    # blocky label maps (so there is an interior as well as a band), two images, odd sizes
    labels = rng.integers(0, 3, (2, 5, 9)).repeat(3, 1).repeat(3, 2)[:, :13, :22]
    np.testing.assert_array_equal(policy.edge_band_fast(labels, stride, band), policy.edge_band(labels, stride, band))
