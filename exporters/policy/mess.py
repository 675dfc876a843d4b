"""The MESS exit policy as ONNX nodes appended to an exit head's graph (the ``mess`` kind's builder).

The head then returns, besides its logits, ``<prefix>_labels`` (int32, N x H x W) and
``<prefix>_confidence`` (float32, N: the image confidence c_img), and takes ``<prefix>_th_pix``
(float32, [1]) as an input so the pixel threshold changes without a rebuild. Semantics, tie
breaking and the border rule are those of the numpy reference :mod:`mesc.policy.mess`.

Operator choice follows what TensorRT 8.5+ and ONNX Runtime run on the GPU: ReduceMax/ReduceSum/
ReduceMean, ArgMax, Slice + Add/Max or MaxPool/AveragePool, Pad (reflect), GreaterOrEqual/
Greater, Cast (to float / int32 only), Exp/Log/Mul/Div/Add/Sub, Squeeze. Softmax is written out
with Exp/ReduceSum/Div (see append_policy). TensorRT 8.x cannot cast to bool nor compare bools,
so masks are float 0/1 built from comparisons and combined with arithmetic.

How each step maps to those ops:

- median on the edge band: only 1(median >= th_pix) is needed, and for an odd window
  1(median(w) >= t) == 1(mean(1(w >= t)) >= 0.5): a box count of the pixel indicator over a
  reflect-padded map. Box sums are separable, so the 33 x 33 window at os=8 is a 33-window along
  H then along W. Each 1-D window is built by doubling with Slice + Add (pooling="shift": about
  2*log2(k) cheap elementwise passes; counts stay exact integers in float32), or as
  AveragePool (k,1) then (1,k) (pooling="pool": exact up to stride 50, see :mod:`.pooling`,
  which also picks the form per deployment target);
- border rule (repeated reflection, :mod:`mesc.policy.mess`): a chain of reflect Pads, each at most
  size-1 wide (what Pad allows), which composes to numpy's repeated reflection. With static H/W
  (mesc exports at a fixed size) the chain is static; an axis of size 1 skips its padding, since
  every value along it is the same. With dynamic H/W the pad widths are computed from Shape
  (Shape/Slice/Min/Sub/Concat on int64 shape tensors); that path needs H, W >= 2;
- edge band: max and min of the labels over the (2R+1)^2 window, band = (max - min) > 0.5,
  min = -max(-labels), with R = ceil(os/2) for the paper's band (its label edges grown by
  os, :mod:`mesc.policy.mess` says why that is the same set) and R = os for the wide
  one. Reflection never brings in a label from outside the clamped window, so
  with pooling="pool" a MaxPool with implicit (-inf) padding is exact and needs no Pad for any
  image size; pooling="shift" reflect-pads like the median and doubles with Slice + Max;
- argmax ties: ONNX ArgMax with select_last_index=0 picks the first maximal index, like np.argmax.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from mesc.errors import MescError
from mesc.exporters.policy.builder import GraphBuilder
from mesc.exporters.policy.graph import (argmax_labels, check_graph, check_head, check_prefix_unused, logits_dims,
                                         pixel_confidence, with_nodes)
from mesc.exporters.policy.registry import register_builder
from mesc.policy import POOLINGS, band_radius, check_confidence_kind, check_stride, edge_band_of, pooling_of


def append_policy(model: onnx.ModelProto, logits: str, prefix: str, confidence: str = "top1",
                  edge: bool = True, stride: int = 8, pooling: str = "shift",
                  labels: bool = True, band: str = "paper") -> onnx.ModelProto:
    """Return a copy of the head ``model`` with the MESS policy appended to tensor ``logits``.

    Adds graph input ``{prefix}_th_pix`` (float32, [1]) and outputs ``{prefix}_labels`` (int32,
    N x H x W) and ``{prefix}_confidence`` (float32, N); ``logits`` stays (or becomes) an output.
    ``logits`` must be float32 N x M x H x W (N, H, W may be dynamic; M must be static for
    ``confidence="entropy"``). Opset >= 13.

    ``pooling`` picks how the windowed max (edge band) and count (median) are computed, both
    separable: ``"shift"`` (default) with Slice + Max/Add doubling, ``"pool"`` with
    MaxPool/AveragePool of (k,1) then (1,k). They give identical results up to stride 50 (the
    AveragePool's float error bound, :func:`~mesc.exporters.policy.pooling.pool_is_exact`);
    "shift" is faster on ONNX Runtime CPU, "pool" is about a quarter of the nodes (kernel
    launches on a GPU). :func:`~mesc.exporters.policy.pooling.choose_pooling` picks per target.

    ``band`` is the semantic edge band, ``"paper"`` (MESS Eq. 8) or ``"wide"`` (see
    :mod:`mesc.policy.band`).

    ``labels=False`` leaves the ``{prefix}_labels`` output out: with the policy at the exit's
    native resolution the labels come from the full-size logits in a separate tail segment
    (:func:`append_labels`), run only for the images that leave.
    """
    opset = check_head(model, prefix)
    confidence = check_confidence_kind(confidence)
    stride = check_stride(stride)
    if pooling not in POOLINGS:
        raise MescError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    band_r = band_radius(stride, band)
    dims = logits_dims(model, logits, confidence)
    n_dim, m_dim, h_dim, w_dim = dims
    th_name, labels_name, conf_name = f"{prefix}_th_pix", f"{prefix}_labels", f"{prefix}_confidence"
    check_prefix_unused(model, prefix, (th_name, labels_name, conf_name))

    b = GraphBuilder(prefix, opset)
    labels4 = argmax_labels(b, logits, labels_name if labels else None)
    ind = b.as_float(b.op("GreaterOrEqual", [pixel_confidence(b, logits, confidence, m_dim), th_name]))
    if edge:
        ind = _median_on_edge_band(b, ind, labels4, stride, band_r, pooling, h_dim, w_dim)
    b.reduce("ReduceMean", ind, [1, 2, 3], keepdims=0, out=conf_name)

    out = with_nodes(model, b, logits, dims)
    g = out.graph
    g.input.append(helper.make_tensor_value_info(th_name, TensorProto.FLOAT, [1]))
    if labels:
        g.output.append(helper.make_tensor_value_info(labels_name, TensorProto.INT32, [n_dim, h_dim, w_dim]))
    g.output.append(helper.make_tensor_value_info(conf_name, TensorProto.FLOAT, [n_dim]))
    check_graph(out, logits)
    return out


def _median_on_edge_band(b: GraphBuilder, ind: str, labels4: str, stride: int, band_r: int, pooling: str,
                         h_dim, w_dim) -> str:
    """The pixel indicator 1(c >= th_pix) with the windowed median's indicator on the semantic
    edge band (a label change within the (2*band_r+1)^2 window)."""
    r = stride
    lab_f = b.as_float(labels4)
    if pooling == "pool":
        lab_max = b.max_pool_axis(b.max_pool_axis(lab_f, 2, band_r), 3, band_r)
        neg = b.op("Mul", [lab_f, b.const("neg1", -1.0, np.float32)])
        spread = b.op("Add", [lab_max, b.max_pool_axis(b.max_pool_axis(neg, 2, band_r), 3, band_r)])  # max - min
        frac = b.box_mean_axis(b.box_mean_axis(ind, 2, 2 * r, h_dim), 3, 2 * r, w_dim)
        med_ind = b.as_float(b.op("GreaterOrEqual", [frac, b.const("half", 0.5, np.float32)]))
    else:
        lab_max = b.window_axis(b.window_axis(lab_f, 2, band_r, h_dim, "Max"), 3, band_r, w_dim, "Max")
        neg = b.op("Mul", [lab_f, b.const("neg1", -1.0, np.float32)])
        neg_max = b.window_axis(b.window_axis(neg, 2, band_r, h_dim, "Max"), 3, band_r, w_dim, "Max")
        spread = b.op("Add", [lab_max, neg_max])  # max - min
        # Counts of 0/1 values (<= (4os+1)^2) are exact in float32; k*k is odd, so
        # count > k*k/2 is exactly "at least half", i.e. median >= th_pix.
        k = 4 * r + 1
        count = b.window_axis(b.window_axis(ind, 2, 2 * r, h_dim, "Add"), 3, 2 * r, w_dim, "Add")
        med_ind = b.as_float(b.op("Greater", [count, b.const("half_window", k * k / 2, np.float32)]))
    band = b.as_float(b.op("Greater", [spread, b.const("half", 0.5, np.float32)]))
    # ind + band * (med_ind - ind): selects med_ind on the band, exact on 0/1 values.
    return b.op("Add", [ind, b.op("Mul", [band, b.op("Sub", [med_ind, ind])])])


def build(model, logits: str, prefix: str, policy: dict, labels: bool = True, net=None) -> onnx.ModelProto:
    """The ``mess`` kind's builder: :func:`append_policy` with the exit's manifest settings (the
    band and the pooling it was exported with: an old package's "wide" stays wide, and a
    package without "pooling" compiled "shift")."""
    return append_policy(model, logits, prefix, confidence=policy.get("confidence", "top1"),
                         edge=policy.get("edge", True), stride=policy.get("stride", 8), labels=labels,
                         band=edge_band_of(policy), pooling=pooling_of(policy))


register_builder("mess", build)

__all__ = ["POOLINGS", "append_policy", "build"]
