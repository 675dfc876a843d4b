"""The thesis' policies in the graph (ONNX Runtime CPU) against their numpy references.

Tolerances: the graph computes in float32, the references in float64. The mean confidences
agree to 1e-6 absolute, the FFT score to 1e-5 relative (sums of H*W float32 products of
magnitude <= 1 in the DFT MatMuls), the learned score to 1e-5 absolute. The logits are drawn so
that no pixel's confidence lies within 1e-4 of a feature edge: there a float32 rounding may
move one pixel across the edge, a 1/(H*W) change of one feature.
"""

import numpy as np
import onnxruntime as ort
import pytest

from mesc.errors import MescError
from mesc.exporters.policy.mess import append_policy
from mesc.exporters.policy import append_kind, dft_matrices, in_graph_kinds, strip_policy
from mesc.policy import get_kind
from mesc.policy import fft_magnitude, mean_confidence, pixel_confidence
from mesc.policy.learned import ENTROPY_EDGES, FEATURES, TOP1_EDGES, DecisionNet, decision_features
from test_mess_graph import ALLOWED_OPS, head

# what the score policies add to the MESS graph's ops; TensorRT 8.5+ runs them all
SCORE_OPS = ALLOWED_OPS | {"MatMul", "Sqrt", "Relu", "Sigmoid"}
TOLERANCE = {"mean_top1": dict(atol=1e-6, rtol=0), "mean_entropy": dict(atol=1e-6, rtol=0),
             "fft": dict(atol=0, rtol=1e-5), "learned": dict(atol=1e-5, rtol=0)}


def net(seed=0, hidden=5):
    rng = np.random.default_rng(seed)
    return DecisionNet(rng.normal(size=(FEATURES, hidden)), rng.normal(size=hidden), rng.normal(size=hidden), 0.2)


def clear_of_edges(rng, shape):
    """Random logits whose top-1 and entropy confidences all lie >= 1e-4 from a feature edge."""
    while True:
        x = (rng.normal(size=shape) * 2.5).astype(np.float32)
        gaps = [np.abs(pixel_confidence(x, kind)[..., None] - np.asarray(edges)).min()
                for kind, edges in (("top1", TOP1_EDGES), ("entropy", ENTROPY_EDGES))]
        if min(gaps) >= 1e-4:
            return x


def reference(kind, x, decision=None):
    if kind == "fft":
        return fft_magnitude(x)
    if kind == "learned":
        return decision.score(decision_features(x))
    return mean_confidence(x, kind[len("mean_"):])


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]  # no th_pix: these kinds read no pixel threshold
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


# every kind with a builder that reads no pixel threshold (all but MESS)
SCORE_KINDS = [k for k in in_graph_kinds() if not get_kind(k).pixel_threshold]


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("m,h,w,n", [(5, 12, 20, 3), (2, 7, 1, 2), (19, 16, 9, 1)])
def test_graph_agrees_with_the_numpy_reference(kind, m, h, w, n):
    rng = np.random.default_rng(m * h + w)
    x = clear_of_edges(rng, (n, m, h, w))
    decision = net(seed=h)
    model = append_kind(head(m, h, w, n="N"), "logits", "exit0", kind, net=decision)
    assert {node.op_type for node in model.graph.node} <= SCORE_OPS
    out = run(model, x)
    assert out["exit0_confidence"].shape == (n,)
    np.testing.assert_allclose(out["exit0_confidence"], reference(kind, x, decision), **TOLERANCE[kind])
    assert (out["exit0_labels"] == x.argmax(1)).all() and out["exit0_labels"].dtype == np.int32
    np.testing.assert_array_equal(out["logits"], x)


def test_fft_score_of_hand_computed_maps():
    """A constant top-1 map a scores a (only the DC coefficient, H*W*a, over H*W); a map with
    one pixel at 1 over 1/M elsewhere (M classes) spreads its step over every coefficient."""
    m, h, w = 4, 4, 8
    const = np.zeros((1, m, h, w), np.float32)  # uniform softmax: top-1 = 1/4 everywhere
    model = append_kind(head(m, h, w), "logits", "exit0", "fft")
    assert run(model, const)["exit0_confidence"][0] == pytest.approx(0.25, abs=1e-7)
    spike = const.copy()
    spike[0, 0, 1, 2] = 40.0  # top-1 = 1 there (to float32), 1/4 elsewhere
    # DFT of 1/4 + (3/4) delta: DC = 32/4 + 3/4, every other coefficient 3/4 in magnitude
    expected = ((32 / 4 + 3 / 4) + 31 * 3 / 4) / 32
    assert run(model, spike)["exit0_confidence"][0] == pytest.approx(expected, rel=1e-6)


def test_dft_matrices_are_numpys_fft():
    for n in (1, 6, 33):
        c, s = dft_matrices(n)
        np.testing.assert_allclose(c - 1j * s, np.fft.fft(np.eye(n)), atol=1e-6)


def test_a_mess_policy_is_replaced_by_another_kind():
    x = clear_of_edges(np.random.default_rng(3), (2, 3, 8, 8))
    mess = append_policy(head(3, 8, 8), "logits", "exit0", "top1", True, 1)
    stripped = strip_policy(mess, "exit0")
    assert [o.name for o in stripped.graph.output] == ["logits"] and [i.name for i in stripped.graph.input] == ["x"]
    assert not any(n.name.startswith("exit0_policy/") for n in stripped.graph.node) and not stripped.graph.initializer
    out = run(append_kind(stripped, "logits", "exit0", "mean_entropy"), x)
    np.testing.assert_allclose(out["exit0_confidence"], mean_confidence(x, "entropy"), atol=1e-6)
    # and back: the score policy is stripped the same way
    back = append_policy(strip_policy(append_kind(stripped, "logits", "exit0", "fft"), "exit0"),
                         "logits", "exit0", "top1", True, 1)
    assert [i.name for i in back.graph.input] == ["x", "exit0_th_pix"]


@pytest.mark.parametrize("call,message", [
    (lambda: append_kind(head(3, "H", "W"), "logits", "e", "fft"), "fft policy needs static H and W"),
    (lambda: append_kind(head(3, 4, 4), "logits", "e", "learned"), "needs its DecisionNet"),
    (lambda: append_kind(head(3, 4, 4), "logits", "e", "median"), "kind must be one of"),
    (lambda: append_kind(head("M", 4, 4), "logits", "e", "mean_entropy"), "static class count M >= 2"),
    (lambda: strip_policy(head(3, 4, 4), "exit0"), "no policy appended under the prefix 'exit0'"),
    (lambda: DecisionNet(np.zeros((3, 2)), np.zeros(2), np.zeros(2), 0.0), f"finite w1 \\({FEATURES} x K\\)"),
])
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(MescError, match=message):
        call()
