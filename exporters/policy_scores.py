"""The thesis' exit policies as ONNX nodes in an exit head, beside MESS (:mod:`.policy_graph`).

Each appends to the head's logits what the runtime reads from a head with an in-graph policy:
``<prefix>_labels`` (int32 N x H x W, unless a tail gives them) and ``<prefix>_confidence``
(float32, N: the image's score, compared on the host with the exit's thresholds). None reads a
pixel threshold, so the head takes no ``<prefix>_th_pix`` input. Numpy references:
:func:`mesc.policy.mean_confidence`, :func:`mesc.policy.fft_magnitude` and
:mod:`mesc.policy.learned`.

- ``mean_top1`` / ``mean_entropy``: the per-pixel confidence of the MESS graph (softmax written
  out), ReduceMean over the image.
- ``fft``: mean magnitude of the unnormalised 2-D DFT of the top-1 map. TensorRT 8.x has no DFT
  operator (ONNX DFT is opset 17 and TensorRT parses it only from 10.x, and not on DLA), so the
  DFT is two MatMuls with constant cos/sin matrices: ``F = A_H X A_W`` with
  ``A_n[j, k] = exp(-2 pi i jk/n)``, real and imaginary parts from four real products. It stays
  in the graph (not a host step) so that only 4 bytes an image cross to the host, as for
  MESS; it costs ``2 H W (H + W)`` multiply-adds an image and ``2 (H^2 + W^2)`` float32
  constants, small at the exit's native resolution (``--policy-at native``), a few MB at
  512 x 1024. Needs static H and W (the matrices' size).
- ``learned``: the decision features of :mod:`mesc.policy.learned` (cumulative histograms of
  the top-1 and entropy confidences as ReduceMean of GreaterOrEqual against constant edges,
  and their means), then MatMul/Add/Relu/MatMul/Add/Sigmoid with the network's weights.

Ops: those of the MESS graph plus MatMul, Sqrt, Relu, Sigmoid, Concat, Squeeze, all run by
TensorRT 8.5+ and ONNX Runtime.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from mesc.errors import MescError
from mesc.exporters.policy_graph import (
    _argmax_labels,
    _Builder,
    _check,
    _check_policy_args,
    _check_prefix_unused,
    _confidence_from_softmax,
    _policy_logits_dims,
    _softmax_parts,
    _with_nodes,
)

SCORE_KINDS = ("mean_top1", "mean_entropy", "fft", "learned")


def dft_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of the n-point DFT, ``A[j, k] = cos(2 pi jk/n) - i sin(2 pi jk/n)``, float32;
    jk reduced mod n first so that large sizes keep full accuracy."""
    k = np.arange(n, dtype=np.int64)
    angle = 2.0 * math.pi * ((k[:, None] * k[None, :]) % n) / n
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def append_score_policy(model: onnx.ModelProto, logits: str, prefix: str, kind: str, net=None,
                        labels: bool = True) -> onnx.ModelProto:
    """A copy of the head ``model`` with the ``kind`` policy (one of ``SCORE_KINDS``) appended
    to tensor ``logits`` (float32 N x M x H x W): outputs ``{prefix}_confidence`` (N) and, with
    ``labels``, ``{prefix}_labels``. ``net`` (a :class:`mesc.policy.learned.DecisionNet`) is the
    learned policy's network."""
    if kind not in SCORE_KINDS:
        raise MescError(f"kind must be one of {SCORE_KINDS}, got {kind!r}")
    needs_entropy = kind in ("mean_entropy", "learned")
    _, _, opset = _check_policy_args(model, prefix, "top1", 1, "shift")
    dims = _policy_logits_dims(model, logits, "entropy" if needs_entropy else "top1")
    n_dim, m_dim, h_dim, w_dim = dims
    labels_name, conf_name = f"{prefix}_labels", f"{prefix}_confidence"
    _check_prefix_unused(model, prefix, (labels_name, conf_name, f"{prefix}_th_pix"))
    if kind == "learned":
        from mesc.policy.learned import DecisionNet

        if not isinstance(net, DecisionNet):
            raise MescError(f"the learned policy of {prefix} needs its DecisionNet, got {type(net).__name__}")
    if kind == "fft" and not (isinstance(h_dim, int) and isinstance(w_dim, int)):
        raise MescError(f"the fft policy needs static H and W in {logits!r} (the DFT matrices' size), "
                        f"got {dims}")

    b = _Builder(prefix, opset)
    _argmax_labels(b, logits, labels_name if labels else None)
    parts = _softmax_parts(b, logits)
    if kind in ("mean_top1", "mean_entropy"):
        conf = _confidence_from_softmax(b, parts, kind[len("mean_"):], m_dim)
        b.reduce("ReduceMean", conf, [1, 2, 3], keepdims=0, out=conf_name)
    elif kind == "fft":
        _fft_mean_magnitude(b, _confidence_from_softmax(b, parts, "top1", m_dim), h_dim, w_dim, conf_name)
    else:
        feats = _decision_features(b, _confidence_from_softmax(b, parts, "top1", m_dim),
                                   _confidence_from_softmax(b, parts, "entropy", m_dim))
        _decision_network(b, feats, net, conf_name)

    out = _with_nodes(model, b, logits, dims)
    g = out.graph
    if labels:
        g.output.append(helper.make_tensor_value_info(labels_name, TensorProto.INT32, [n_dim, h_dim, w_dim]))
    g.output.append(helper.make_tensor_value_info(conf_name, TensorProto.FLOAT, [n_dim]))
    _check(out, logits)
    return out


def _fft_mean_magnitude(b: _Builder, top1: str, h: int, w: int, out: str) -> None:
    """mean |DFT2(top1)| over the H x W coefficients, N (top1: N,1,H,W)."""
    ch, sh = dft_matrices(h)
    cw, sw = dft_matrices(w)
    # rank-4 constants: TensorRT broadcasts MatMul over leading dims of size 1
    ch, sh, cw, sw = (b.const(name, m[None, None], np.float32)
                      for name, m in (("dft_cos_h", ch), ("dft_sin_h", sh), ("dft_cos_w", cw), ("dft_sin_w", sw)))
    p, q = b.op("MatMul", [ch, top1]), b.op("MatMul", [sh, top1])  # (C_H - i S_H) X = P - i Q
    # (P - iQ)(C_W - i S_W) = (P C_W - Q S_W) - i (Q C_W + P S_W)
    re = b.op("Sub", [b.op("MatMul", [p, cw]), b.op("MatMul", [q, sw])])
    im = b.op("Add", [b.op("MatMul", [q, cw]), b.op("MatMul", [p, sw])])
    mag = b.op("Sqrt", [b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])])])
    b.reduce("ReduceMean", mag, [1, 2, 3], keepdims=0, out=out)


def _decision_features(b: _Builder, top1: str, ent: str) -> str:
    """N x FEATURES: the fractions of pixels at or above each edge, then the two means."""
    from mesc.policy.learned import ENTROPY_EDGES, TOP1_EDGES

    cols = []
    for conf, edges in ((top1, TOP1_EDGES), (ent, ENTROPY_EDGES)):
        above = b.as_float(b.op("GreaterOrEqual", [conf, b.const("edges", np.reshape(edges, (1, -1, 1, 1)),
                                                                   np.float32)]))
        cols.append(b.reduce("ReduceMean", above, [2, 3], keepdims=0))  # N, K
    cols += [b.reduce("ReduceMean", c, [2, 3], keepdims=0) for c in (top1, ent)]  # N, 1 each
    return b.op("Concat", cols, axis=1)


def _decision_network(b: _Builder, feats: str, net, out: str) -> None:
    hidden = b.op("Relu", [b.op("Add", [b.op("MatMul", [feats, b.const("w1", net.w1, np.float32)]),
                                        b.const("b1", net.b1, np.float32)])])
    logit = b.op("Add", [b.op("MatMul", [hidden, b.const("w2", net.w2.reshape(-1, 1), np.float32)]),
                         b.const("b2", [net.b2], np.float32)])
    b.op("Squeeze", [b.op("Sigmoid", [logit]), b.const("axes", [1], np.int64)], out=out)


def strip_policy(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """A copy of the head ``model`` without the policy appended under ``prefix`` (by
    :func:`~mesc.exporters.policy_graph.append_policy` or :func:`append_score_policy`): its
    nodes and constants (all named ``{prefix}_policy/...``), the ``{prefix}_th_pix`` input and
    the labels and confidence outputs. The logits stay an output."""
    mark = f"{prefix}_policy/"
    policy_io = {f"{prefix}_th_pix", f"{prefix}_labels", f"{prefix}_confidence"}
    g = model.graph
    nodes = [n for n in g.node if not n.name.startswith(mark)]
    if len(nodes) == len(g.node):
        raise MescError(f"the head graph has no policy appended under the prefix {prefix!r} "
                        f"(no node named {mark}...)")
    produced = {o for n in g.node if n.name.startswith(mark) for o in n.output}
    dangling = sorted({i for n in nodes for i in n.input if i in produced or i == f"{prefix}_th_pix"})
    if dangling:
        raise MescError(f"layers of the head read the policy's tensors {dangling}; the policy cannot be replaced")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.node[:]
    og.node.extend(nodes)
    keep_init = [t for t in g.initializer if not t.name.startswith(mark)]
    del og.initializer[:]
    og.initializer.extend(keep_init)
    for field in (og.input, og.output):
        keep = [v for v in field if v.name not in policy_io]
        del field[:]
        field.extend(keep)
    keep_vi = [v for v in og.value_info if v.name not in produced]
    del og.value_info[:]
    og.value_info.extend(keep_vi)
    return out


__all__ = ["SCORE_KINDS", "append_score_policy", "dft_matrices", "strip_policy"]
