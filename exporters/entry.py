"""The entry segment: uint8 N x H x W x C images in, the package's normalised float input out.

With it, a uint8 call uploads a quarter of the bytes of the float batch and the host does no
per-pixel work: the cast, the NHWC -> NCHW layout and the normalisation run on the device, as
the package's first segment. Float input skips it and starts at the first chunk, which is the
same graph either way.

The arithmetic is :func:`mesc.runtime.images.normalize`'s, op for op in float32 and in the same
order (cast, divide by scale, subtract the mean, divide by the std), so that device and host
normalisation give bit-identical inputs: a division is not turned into a multiplication by the
reciprocal, which rounds differently. The transpose moves values without touching them, so where
it sits does not change them. tests/exporters/test_entry.py holds the two to that.
"""

from __future__ import annotations

import numpy as np

from mesc.errors import ExportError
from mesc.lazy import require

ENTRY = "entry"  # the segment's name (and file onnx/entry.onnx)
ENTRY_INPUT = "image_uint8"


def entry_record() -> dict:
    """The manifest's ``input.entry``."""
    return {"segment": ENTRY, "input": ENTRY_INPUT, "layout": "NHWC"}


def _constants(normalization: dict | None, channels: int):
    """(scale, mean, std) as the float32 arrays the host normalisation uses, shaped to broadcast
    over N x C x H x W."""
    norm = normalization or {}
    scale = np.float32(norm.get("scale", 255.0))
    mean = np.asarray(norm.get("mean", [0.0] * channels), np.float32)
    std = np.asarray(norm.get("std", [1.0] * channels), np.float32)
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise ExportError(f"the model's input_normalization has {mean.size} means / {std.size} stds for a "
                          f"{channels}-channel input")
    return (np.array(scale, np.float32), mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1))


def entry_model(input_name: str, shape: tuple, normalization: dict | None, opset: int, dynamic_batch: bool):
    """The entry graph for a float input ``input_name`` of ``shape`` (N, C, H, W)."""
    onnx = require("onnx", extra="core")
    from onnx import TensorProto, helper, numpy_helper

    n, c, h, w = shape
    batch = "batch" if dynamic_batch else int(n)
    scale, mean, std = _constants(normalization, c)
    inits = [numpy_helper.from_array(v, name) for name, v in
             (("entry_scale", scale), ("entry_mean", mean), ("entry_std", std))]
    nodes = [
        helper.make_node("Cast", [ENTRY_INPUT], ["entry_float"], to=TensorProto.FLOAT, name="entry_cast"),
        helper.make_node("Transpose", ["entry_float"], ["entry_nchw"], perm=[0, 3, 1, 2], name="entry_nchw"),
        # normalize()'s order: ((x / scale) - mean) / std, each rounded to float32
        helper.make_node("Div", ["entry_nchw", "entry_scale"], ["entry_scaled"], name="entry_scale"),
        helper.make_node("Sub", ["entry_scaled", "entry_mean"], ["entry_centred"], name="entry_mean"),
        helper.make_node("Div", ["entry_centred", "entry_std"], [input_name], name="entry_std"),
    ]
    graph = helper.make_graph(
        nodes, "mesc_entry",
        [helper.make_tensor_value_info(ENTRY_INPUT, TensorProto.UINT8, [batch, int(h), int(w), int(c)])],
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, int(c), int(h), int(w)])],
        initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="mesc")
    # the lowest IR version the opset allows: what the ONNX Runtime and TensorRT versions mesc
    # supports read
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def entry_flops(shape: tuple) -> int:
    """Three float operations an element (scale, mean, std) of the example batch ``shape``, as the
    other segments count theirs; the cast and the transpose only move data."""
    return 3 * int(np.prod([int(d) for d in shape]))
