"""The MESS policy graph's two window formulations, ``pooling="pool"`` and ``"shift"``, on the
logits of every reference model (mesc.models, tiny widths; the demo with its trained weights),
both edge bands, strides 8 to 32, at the model's size and at a size that is no multiple of
anything: the same labels, confidences and exit decisions, and both the numpy reference's
counts (ONNX Runtime CPU). Then which one a target gets (the chooser)."""

import functools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mesc.errors import MescError
from mesc.exporters.policy.mess import append_policy
from mesc.exporters.policy.pooling import (MAX_EXACT_POOL_STRIDE, check_pooling_choice, choose_pooling,
                                           pool_is_exact, with_pooling)
from mesc.policy import CONFIDENCE_KINDS, EDGE_BANDS, mess_confidence_fast, pixel_confidence, predicted_labels

STRIDES = (8, 16, 32)


def head(m, h, w):
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "head",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", m, h, w])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", m, h, w])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@functools.lru_cache(maxsize=None)
def session(m, h, w, confidence, stride, band, pooling, edge=True):
    model = append_policy(head(m, h, w), "logits", "e", confidence, edge, stride, pooling, band=band)
    opts = ort.SessionOptions()
    # one thread that sleeps when idle: the test machine's cores are shared
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(x, th, confidence, stride, band, pooling):
    sess = session(*x.shape[1:], confidence, stride, band, pooling)
    labels, conf = sess.run(["e_labels", "e_confidence"], {"x": x, "e_th_pix": np.array([th], np.float32)})
    return labels, conf


@functools.lru_cache(maxsize=None)
def exit_logits(name):
    """Every exit's logits of reference model ``name`` on one image, one exit an image (E x M x
    H x W float32: a model's exits all predict at the input size)."""
    torch = pytest.importorskip("torch")
    import mesc.models as models
    from tiny_models import tiny

    if name == "demo":  # trained: label maps with real regions and edges
        model, size = models.create("demo").eval(), (128, 256)
    elif name == "demo-search":  # the trained demo with two (fresh) candidate heads per early point
        from mesc.models.candidates import DEFAULT_CANDIDATE_GRID

        torch.manual_seed(0)
        model, size = models.create(name, grid=DEFAULT_CANDIDATE_GRID[:2]).eval(), (128, 256)
    else:  # random weights, 5 classes
        model, size = tiny(name, num_classes=5), (64, 128)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        outs = model(x)
    flat = []
    for o in outs:  # candidate-head models give a list per exit point
        flat.extend(o if isinstance(o, (list, tuple)) else [o])
    out = np.concatenate([o.numpy().astype(np.float64) for o in flat])
    if name != "demo":
        # random heads give logits with one class ahead everywhere and little spatial change:
        # each class map standardised, the classes compete as a trained model's do, over the
        # spatial structure the model computes
        out = 3 * (out - out.mean(axis=(2, 3), keepdims=True)) / (out.std(axis=(2, 3), keepdims=True) + 1e-12)
    return out.astype(np.float32)


def clear_threshold(conf):
    """A th_pix amid the confidences (between their 20th and 80th percentiles), midway across the
    widest gap between neighbouring values: float32 noise cannot move any pixel across it, so
    the graph's and the float64 reference's counts must agree exactly."""
    v = np.unique(conf)
    lo, hi = v.size // 5, max(v.size // 5 + 1, 4 * v.size // 5)
    gaps = np.diff(v[lo:hi + 1])
    i = lo + int(np.argmax(gaps))
    th = float((v[i] + v[i + 1]) / 2)
    assert np.abs(conf - th).min() > 1e-6, "no clear threshold among these confidences"
    return th


def reference_models():
    from tiny_models import CANDIDATE_MODELS, TINY

    return sorted(TINY) + sorted(CANDIDATE_MODELS)


def test_every_reference_model_is_compared():
    pytest.importorskip("torch")
    import mesc.models as models

    assert set(reference_models()) == set(models.list_models())


@pytest.mark.parametrize("name", reference_models())
def test_pool_equals_shift_and_the_reference_on_reference_models(name):
    logits = exit_logits(name)  # one image per exit
    confidence = CONFIDENCE_KINDS[reference_models().index(name) % 2]  # both kinds across the models
    h, w = logits.shape[2:]
    compared = 0
    # the model's size, and one that is no multiple of any window, stride or power of two
    for x in (logits, np.ascontiguousarray(logits[:, :, :h - 3, :w - 5])):
        th = clear_threshold(pixel_confidence(x, confidence))
        px = x.shape[2] * x.shape[3]
        for stride in STRIDES:
            for band in EDGE_BANDS:
                where = f"{name} {x.shape[2:]} os {stride} {band} {confidence}"
                lab_s, c_s = run(x, th, confidence, stride, band, "shift")
                lab_p, c_p = run(x, th, confidence, stride, band, "pool")
                assert np.array_equal(lab_p, lab_s) and np.array_equal(lab_s, predicted_labels(x)), where
                assert np.abs(c_p.astype(np.float64) - c_s).max() <= 1e-6, where
                for th_img in (*c_s.tolist(), *c_p.tolist(), 0.5):  # exit decisions, at their edges too
                    assert (c_p >= th_img).tolist() == (c_s >= th_img).tolist(), where
                want = np.rint(mess_confidence_fast(x, th, confidence, True, stride, band) * px).astype(int).tolist()
                for c in (c_s, c_p):  # both against the numpy reference, pixel count for pixel count
                    assert np.rint(c.astype(np.float64) * px).astype(int).tolist() == want, where
                compared += len(x)
    assert compared == len(logits) * 2 * len(STRIDES) * len(EDGE_BANDS)


def checkerboard_logits(h, w, seed=0):
    """The tightest case for the median's count: labels alternate pixel by pixel (the band is
    everywhere) and the indicator 1(c >= 0.75) is random, so many windows hold one confident
    pixel more or fewer than half: AveragePool's fraction lies 1/(2k^2) from 0.5 there."""
    i, j = np.indices((h, w))
    sign = np.where((i + j) % 2 == 0, 1.0, -1.0)
    mag = np.where(np.random.default_rng(seed).random((h, w)) < 0.5, 3.0, 0.5)  # conf 0.95 / 0.62
    x = np.zeros((1, 2, h, w), np.float32)
    x[0, 0] = sign * mag
    return x


@pytest.mark.parametrize("stride", STRIDES)
def test_pool_is_exact_on_windows_one_pixel_from_half(stride):
    x = checkerboard_logits(2 * (4 * stride + 1) + 7, 2 * (4 * stride + 1) + 3, seed=stride)
    k = 4 * stride + 1
    ind = (pixel_confidence(x, "top1") >= 0.75).astype(np.int64)[0]
    from mesc.policy import box_sum

    counts = box_sum(ind, 2 * stride)
    assert (np.abs(2 * counts - k * k) == 1).sum() > 0, "no window one pixel from half: the case is not tight"
    _, c_s = run(x, 0.75, "top1", stride, "paper", "shift")
    _, c_p = run(x, 0.75, "top1", stride, "paper", "pool")
    assert c_p.tolist() == c_s.tolist() == mess_confidence_fast(x, 0.75, "top1", True, stride).astype(np.float32).tolist()


def test_without_the_edge_band_both_are_one_graph():
    a = append_policy(head(3, 16, 16), "logits", "e", edge=False, pooling="shift")
    b = append_policy(head(3, 16, 16), "logits", "e", edge=False, pooling="pool")
    assert a.SerializeToString() == b.SerializeToString()


def test_the_exactness_bound():
    # k^2 (k+3) < 2^23 with k = 4 os + 1: the reference models' strides (<= 32) are inside it
    assert all(pool_is_exact(s) for s in range(1, MAX_EXACT_POOL_STRIDE + 1))
    assert not pool_is_exact(MAX_EXACT_POOL_STRIDE + 1) and not pool_is_exact(64)


def test_a_target_gets_pool_where_exact_and_shift_elsewhere():
    mess = {"confidence": "top1", "edge": True, "band": "paper", "stride": 8, "th_pix": 0.9, "th_img": 0.8}
    assert choose_pooling(mess) == "shift"  # no target: the CPU default
    assert choose_pooling(mess, target="orin") == choose_pooling(mess, target="host") == "pool"
    assert choose_pooling(mess, "shift", "orin") == "shift"  # the user's override
    assert choose_pooling(mess, "pool") == "pool"
    # past the bound the target keeps shift, and an explicit pool is refused naming the exit
    far = dict(mess, stride=64)
    assert choose_pooling(far, target="orin") == "shift"
    with pytest.raises(MescError, match=r"exit 'e9': --policy-pooling pool is exact up to output stride 50.*"
                                        r"stride is 64"):
        choose_pooling(far, "pool", None, "exit 'e9'")
    # no windows to compute: nothing to choose
    assert choose_pooling(dict(mess, edge=False), target="orin") == "shift"
    assert choose_pooling({"kind": "mean_top1", "th_img": 0.5}, target="orin") == "shift"
    # auto without a target keeps what the package compiled
    assert choose_pooling(with_pooling(mess, "pool")) == "pool"


def test_bad_choices_are_named():
    with pytest.raises(MescError, match=r"--policy-pooling must be one of auto, shift, pool, got 'fast'"):
        check_pooling_choice("fast")
    with pytest.raises(MescError, match="unknown target 'tx2'"):
        choose_pooling({"stride": 8}, target="tx2")


def test_the_manifest_records_pool_only():
    p = {"stride": 8, "pooling": "pool"}
    assert with_pooling(p, "shift") == {"stride": 8}  # absent means shift: what every mesc reads
    assert with_pooling({"stride": 8}, "pool") == p
