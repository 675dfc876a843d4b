"""The public builder of an exit policy's ONNX nodes (:class:`GraphBuilder`): named constants and
ops under the exit's prefix, the reductions across opsets, and the separable windows the MESS
graph needs (reflect padding, MaxPool/AveragePool, or Slice + Add/Max doubling).

Operator choice follows what TensorRT 8.5+ and ONNX Runtime run on the GPU (see
:mod:`.mess`): TensorRT 8.x cannot cast to bool nor compare bools, so masks are float 0/1 built
from comparisons and combined with arithmetic (:meth:`GraphBuilder.as_float`).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

_INT64_MAX = np.iinfo(np.int64).max


def reflect_steps(size: int, radius: int) -> list:
    """Static reflect-pad widths whose chain equals np.pad(mode='reflect', width=radius)."""
    steps, m, rem = [], size, radius
    while rem > 0:
        p = min(rem, m - 1)
        steps.append(p)
        m += 2 * p
        rem -= p
    return steps


class GraphBuilder:
    """Emits nodes with names under one prefix, so several heads' policies never collide:
    every node and constant is named ``{prefix}_policy/...`` (what :func:`strip_policy` finds)."""

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
            for p in reflect_steps(size, radius):
                v = [0] * 8
                v[axis] = v[axis + 4] = p
                x = self.op("Pad", [x, self.const("pads", v, np.int64)], mode="reflect")
            return x
        # Dynamic size: the number of steps that suffices for the smallest legal size (2); extra
        # steps get width 0. Widths: p = min(rem, m - 1), m the current extent along ``axis``.
        n_steps = max(1, len(reflect_steps(2, radius)))
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


__all__ = ["GraphBuilder", "reflect_steps"]
