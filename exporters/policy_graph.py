"""The MESS exit policy as ONNX nodes appended to an exit head's graph.

The head then returns, besides its logits, ``<prefix>_labels`` (int32, N x H x W) and
``<prefix>_confidence`` (float32, N: the image confidence c_img), and takes ``<prefix>_th_pix``
(float32, [1]) as an input so the pixel threshold changes without a rebuild. Semantics, tie
breaking and the border rule are those of the numpy reference :mod:`mesc.policy`.

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
  AveragePool (k,1) then (1,k) (pooling="pool");
- border rule (repeated reflection, :mod:`mesc.policy`): a chain of reflect Pads, each at most
  size-1 wide (what Pad allows), which composes to numpy's repeated reflection. With static H/W
  (mesc exports at a fixed size) the chain is static; an axis of size 1 skips its padding, since
  every value along it is the same. With dynamic H/W the pad widths are computed from Shape
  (Shape/Slice/Min/Sub/Concat on int64 shape tensors); that path needs H, W >= 2;
- edge band: max and min of the labels over the (2R+1)^2 window, band = (max - min) > 0.5,
  min = -max(-labels), with R = ceil(os/2) for the paper's band (its label edges grown by
  os, :mod:`mesc.policy` says why that is the same set) and R = os for the wide
  one. Reflection never brings in a label from outside the clamped window, so
  with pooling="pool" a MaxPool with implicit (-inf) padding is exact and needs no Pad for any
  image size; pooling="shift" reflect-pads like the median and doubles with Slice + Max;
- argmax ties: ONNX ArgMax with select_last_index=0 picks the first maximal index, like np.argmax.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mesc.errors import ExportError, MescError
from mesc.policy import band_radius, check_confidence_kind, check_stride

MIN_OPSET = 13
POOLINGS = ("shift", "pool")
_INT64_MAX = np.iinfo(np.int64).max


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ExportError("the head model has no default-domain opset import")


def _find_value_info(model: onnx.ModelProto, name: str):
    """The ValueInfo of tensor ``name`` (graph input/output/value_info, else inferred)."""
    g = model.graph
    for vi in list(g.output) + list(g.input) + list(g.value_info):
        if vi.name == name and vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            return vi
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.output) + list(inferred.graph.value_info):
        if vi.name == name:
            return vi
    return None


def _dims(vi):
    """Per dim: an int when static, else the dim_param string (or None)."""
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def _all_names(model: onnx.ModelProto) -> set:
    g = model.graph
    names = {i.name for i in g.input} | {o.name for o in g.output} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
    return names


def _reflect_steps(size: int, radius: int) -> list:
    """Static reflect-pad widths whose chain equals np.pad(mode='reflect', width=radius)."""
    steps, m, rem = [], size, radius
    while rem > 0:
        p = min(rem, m - 1)
        steps.append(p)
        m += 2 * p
        rem -= p
    return steps


class _Builder:
    """Emits nodes with names under one prefix, so several heads' policies never collide."""

    def __init__(self, prefix: str, opset: int):
        self.prefix = prefix
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, what: str) -> str:
        self._n += 1
        return f"{self.prefix}_policy/{what}_{self._n}"

    def const(self, what: str, value, dtype) -> str:
        t = numpy_helper.from_array(np.asarray(value, dtype=dtype), self.name(what))
        self.inits.append(t)
        return t.name

    def op(self, op_type: str, inputs, what: str | None = None, out: str | None = None, **attrs) -> str:
        node_name = self.name(what or op_type)
        out = out or node_name + ":0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=node_name, **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes, keepdims: int, out: str | None = None) -> str:
        # ReduceSum takes axes as an input from opset 13, the other reductions from opset 18.
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.const("axes", axes, np.int64)], out=out, keepdims=keepdims)
        return self.op(op_type, [x], out=out, axes=list(axes), keepdims=keepdims)

    def as_float(self, cond: str) -> str:
        return self.op("Cast", [cond], to=TensorProto.FLOAT)

    # --- separable pooling ---------------------------------------------------------------

    def max_pool_axis(self, x: str, axis: int, radius: int) -> str:
        """Max over [i-r, i+r] along spatial axis (2=H, 3=W), ignoring positions off the image."""
        k = [2 * radius + 1, 1] if axis == 2 else [1, 2 * radius + 1]
        pads = [radius, 0, radius, 0] if axis == 2 else [0, radius, 0, radius]
        return self.op("MaxPool", [x], kernel_shape=k, pads=pads, strides=[1, 1])

    def reflect_pad_axis(self, x: str, axis: int, radius: int, size) -> str:
        """np.pad(..., mode='reflect') of ``radius`` along ``axis`` (static or dynamic size)."""
        if isinstance(size, int):
            for p in _reflect_steps(size, radius):
                v = [0] * 8
                v[axis] = v[axis + 4] = p
                x = self.op("Pad", [x, self.const("pads", v, np.int64)], mode="reflect")
            return x
        # Dynamic size: the number of steps that suffices for the smallest legal size (2); extra
        # steps get width 0. Widths: p = min(rem, m - 1), m the current extent along ``axis``.
        n_steps = max(1, len(_reflect_steps(2, radius)))
        rem = self.const("pad_rem", [radius], np.int64)
        one = self.const("one", [1], np.int64)
        # pads = [N, C, H, W begins | N, C, H, W ends]; empty pieces are left out of the Concat.
        z_before = [self.const("zeros", [0] * axis, np.int64)]
        z_mid = [self.const("zeros", [0] * 3, np.int64)]
        z_after = [self.const("zeros", [0] * (3 - axis), np.int64)] if axis < 3 else []
        for _ in range(n_steps):
            shape = self.op("Shape", [x])
            m = self.op("Slice", [shape, self.const("start", [axis], np.int64), self.const("end", [axis + 1], np.int64)])
            p = self.op("Min", [rem, self.op("Sub", [m, one])])
            pads = self.op("Concat", z_before + [p] + z_mid + [p] + z_after, axis=0)
            x = self.op("Pad", [x, pads], mode="reflect")
            rem = self.op("Sub", [rem, p])
        return x

    def box_mean_axis(self, x: str, axis: int, radius: int, size) -> str:
        if size == 1:
            return x  # every value in the window is the same pixel: the mean is the value
        x = self.reflect_pad_axis(x, axis, radius, size)
        k = [2 * radius + 1, 1] if axis == 2 else [1, 2 * radius + 1]
        return self.op("AveragePool", [x], kernel_shape=k, strides=[1, 1])

    # --- shift-and-combine windows (pooling="shift") -------------------------------------

    def shift(self, x: str, axis: int, start: int, end_from_back: int) -> str:
        """x[start : len - end_from_back] along ``axis``; negative ends keep it shape-agnostic."""
        end = -end_from_back if end_from_back else _INT64_MAX
        return self.op("Slice", [x, self.const("start", [start], np.int64), self.const("end", [end], np.int64),
                                 self.const("axis", [axis], np.int64)])

    def window_axis(self, x: str, axis: int, radius: int, size, combine: str) -> str:
        """Sliding (2r+1)-window Sum ("Add") or Max along ``axis`` over the reflect-padded map.

        Windows of 2^j are built by doubling, W_2w(i) = W_w(i) (+) W_w(i+w), and the k-window
        is put together from them: log2(k) Slice+Add/Max instead of k reads per pixel. ORT's
        CPU pooling walks a (k,1) window column by column and costs ~10x this."""
        if size == 1:
            # all values in the window are this pixel: max is the value, the sum k times it
            return x if combine == "Max" else self.op("Mul", [x, self.const("k", float(2 * radius + 1), np.float32)])
        x = self.reflect_pad_axis(x, axis, radius, size)
        k = 2 * radius + 1
        powers = {1: x}
        w = 1
        while 2 * w <= k:
            powers[2 * w] = self.op(combine, [self.shift(powers[w], axis, 0, w), self.shift(powers[w], axis, w, 0)])
            w *= 2
        # powers[p] has length L - p + 1; the result has length L - k + 1, so a term starting
        # at ``off`` is cut to [off, off + n), i.e. k - p - off dropped at the back.
        if combine == "Max":  # overlap is harmless for max: two windows of w cover k
            if w == k:
                return powers[w]
            return self.op("Max", [self.shift(powers[w], axis, 0, k - w), self.shift(powers[w], axis, k - w, 0)])
        terms, off = [], 0
        for p in sorted(powers, reverse=True):
            if k - off >= p:
                terms.append(self.shift(powers[p], axis, off, k - p - off) if (off or k - p - off) else powers[p])
                off += p
        out = terms[0]
        for t in terms[1:]:
            out = self.op("Add", [out, t])
        return out


def append_policy(model: onnx.ModelProto, logits: str, prefix: str, confidence: str = "top1",
                  edge: bool = True, stride: int = 8, pooling: str = "shift",
                  labels: bool = True, band: str = "paper") -> onnx.ModelProto:
    """Return a copy of the head ``model`` with the MESS policy appended to tensor ``logits``.

    Adds graph input ``{prefix}_th_pix`` (float32, [1]) and outputs ``{prefix}_labels`` (int32,
    N x H x W) and ``{prefix}_confidence`` (float32, N); ``logits`` stays (or becomes) an output.
    ``logits`` must be float32 N x M x H x W (N, H, W may be dynamic; M must be static for
    ``confidence="entropy"``). Opset >= 13.

    ``pooling`` picks how the windowed max (edge band) and count (median) are computed, both
    separable and exact: ``"shift"`` (default) with Slice + Max/Add doubling, ``"pool"`` with
    MaxPool/AveragePool of (k,1) then (1,k). They give identical results; "shift" is ~10x faster
    on ONNX Runtime CPU, "pool" is fewer, larger kernels that may suit some GPU backends better.

    ``band`` is the semantic edge band, ``"paper"`` (MESS Eq. 8) or ``"wide"`` (see
    :mod:`mesc.policy`).

    ``labels=False`` leaves the ``{prefix}_labels`` output out: with the policy at the exit's
    native resolution the labels come from the full-size logits in a separate tail segment
    (:func:`append_labels`), run only for the images that leave.
    """
    confidence, stride, opset = _check_policy_args(model, prefix, confidence, stride, pooling)
    band_r = band_radius(stride, band)
    dims = _policy_logits_dims(model, logits, confidence)
    n_dim, m_dim, h_dim, w_dim = dims
    th_name, labels_name, conf_name = f"{prefix}_th_pix", f"{prefix}_labels", f"{prefix}_confidence"
    _check_prefix_unused(model, prefix, (th_name, labels_name, conf_name))

    b = _Builder(prefix, opset)
    labels4 = _argmax_labels(b, logits, labels_name if labels else None)
    ind = b.as_float(b.op("GreaterOrEqual", [_pixel_confidence(b, logits, confidence, m_dim), th_name]))
    if edge:
        ind = _median_on_edge_band(b, ind, labels4, stride, band_r, pooling, h_dim, w_dim)
    b.reduce("ReduceMean", ind, [1, 2, 3], keepdims=0, out=conf_name)

    out = _with_nodes(model, b, logits, dims)
    g = out.graph
    g.input.append(helper.make_tensor_value_info(th_name, TensorProto.FLOAT, [1]))
    if labels:
        g.output.append(helper.make_tensor_value_info(labels_name, TensorProto.INT32, [n_dim, h_dim, w_dim]))
    g.output.append(helper.make_tensor_value_info(conf_name, TensorProto.FLOAT, [n_dim]))
    _check(out, logits)
    return out


def _check_policy_args(model, prefix: str, confidence: str, stride: int, pooling: str) -> tuple[str, int, int]:
    """The validated confidence kind and stride, and the head's opset."""
    if not isinstance(model, onnx.ModelProto):
        raise MescError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    if not isinstance(prefix, str) or not prefix or "/" in prefix:
        raise MescError(f"prefix must be a non-empty string without '/', got {prefix!r}")
    confidence = check_confidence_kind(confidence)
    stride = check_stride(stride)
    if pooling not in POOLINGS:
        raise MescError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise ExportError(f"the policy needs opset >= {MIN_OPSET}; the head uses opset {opset}")
    return confidence, stride, opset


def _policy_logits_dims(model, logits: str, confidence: str) -> list:
    """N, M, H, W of ``logits``, checked to be what the policy can read."""
    vi = _find_value_info(model, logits)
    if vi is None:
        raise MescError(f"tensor {logits!r} (the logits, N x M x H x W float32) is not in the head graph")
    if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise MescError(f"tensor {logits!r} must be float32 (N x M x H x W), got "
                        f"{TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}")
    dims = _dims(vi)
    if len(dims) != 4:
        raise MescError(f"tensor {logits!r} must have shape N x M x H x W, got rank {len(dims)} {dims}")
    _, m_dim, h_dim, w_dim = dims
    if confidence == "entropy" and not (isinstance(m_dim, int) and m_dim >= 2):
        raise MescError(f"entropy confidence needs a static class count M >= 2 in {logits!r} "
                        f"(N x M x H x W), got M={m_dim!r}")
    for what, d in (("H", h_dim), ("W", w_dim)):
        if isinstance(d, int) and d < 1:
            raise MescError(f"tensor {logits!r} has empty {what} ({dims})")
    return dims


def _check_prefix_unused(model, prefix: str, new_names) -> None:
    taken = _all_names(model)
    clash = [n for n in new_names if n in taken]
    if clash or any(n.startswith(f"{prefix}_policy/") for n in taken):
        raise MescError(f"prefix {prefix!r} is already used in the head graph ({clash or 'policy nodes'}); "
                        "pick a unique prefix per exit")


def _argmax_labels(b: _Builder, logits: str, out: str | None) -> str:
    """The N,1,H,W int64 argmax over classes; also as int32 N,H,W output ``out`` when given."""
    # Labels from the logits, not the probabilities: ties stay exact ties (first index wins).
    labels4 = b.op("ArgMax", [logits], axis=1, keepdims=1, select_last_index=0)
    if out:
        b.op("Cast", [b.op("Squeeze", [labels4, b.const("axes", [1], np.int64)])], to=TensorProto.INT32, out=out)
    return labels4


def _pixel_confidence(b: _Builder, logits: str, confidence: str, m_dim) -> str:
    """Per-pixel top-1 probability or 1 - H/log M, N,1,H,W."""
    return _confidence_from_softmax(b, _softmax_parts(b, logits), confidence, m_dim)


def _softmax_parts(b: _Builder, logits: str) -> tuple[str, str, str]:
    """(z, exp z, S): the pieces both confidences are computed from, so that a policy reading
    both (the learned one) takes one softmax."""
    # Softmax written out over the class axis: ORT's CPU Softmax on a non-last axis transposes
    # the whole tensor, which alone cost more than the rest of the policy. With z = l - max l,
    # S = sum exp z: top-1 probability = 1/S exactly (exp 0 = 1), and the entropy is
    # H = log S - sum(exp(z) * z)/S, which never takes log(0) where a probability underflows.
    z = b.op("Sub", [logits, b.reduce("ReduceMax", logits, [1], keepdims=1)])
    ez = b.op("Exp", [z])
    return z, ez, b.reduce("ReduceSum", ez, [1], keepdims=1)  # S: N,1,H,W, >= 1


def _confidence_from_softmax(b: _Builder, parts: tuple[str, str, str], confidence: str, m_dim) -> str:
    z, ez, s = parts
    one = b.const("one", 1.0, np.float32)
    if confidence == "top1":
        return b.op("Div", [one, s])
    ent = b.op("Sub", [b.op("Log", [s]), b.op("Div", [b.reduce("ReduceSum", b.op("Mul", [ez, z]), [1], keepdims=1), s])])
    return b.op("Sub", [one, b.op("Mul", [ent, b.const("inv_logm", 1.0 / math.log(m_dim), np.float32)])])


def _median_on_edge_band(b: _Builder, ind: str, labels4: str, stride: int, band_r: int, pooling: str,
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


def _with_nodes(model, b: _Builder, logits: str, dims) -> onnx.ModelProto:
    """A copy of ``model`` with the builder's nodes and initializers, ``logits`` kept as an output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.extend(b.nodes)
    out.graph.initializer.extend(b.inits)
    if logits not in {o.name for o in out.graph.output}:
        out.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, dims))
    return out


def append_labels(model: onnx.ModelProto, logits: str, prefix: str) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``{prefix}_labels`` (int32 N x H x W): the ArgMax of
    ``logits`` over classes (first maximal index, as np.argmax), which stays an output."""
    vi = _find_value_info(model, logits)
    if vi is None or vi.type.tensor_type.elem_type != TensorProto.FLOAT or len(_dims(vi)) != 4:
        raise MescError(f"tensor {logits!r} (N x M x H x W float32 logits) is not in the graph")
    dims = _dims(vi)
    n_dim, _, h_dim, w_dim = dims
    b = _Builder(prefix, _default_opset(model))
    _argmax_labels(b, logits, f"{prefix}_labels")
    out = _with_nodes(model, b, logits, dims)
    out.graph.output.append(helper.make_tensor_value_info(f"{prefix}_labels", TensorProto.INT32, [n_dim, h_dim, w_dim]))
    _check(out, logits)
    return out


def _check(model: onnx.ModelProto, logits: str) -> None:
    """onnx.checker plus strict shape inference; a failure here is a bug in this module."""
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the policy graph appended to {logits!r} does not validate: {err}") from err
