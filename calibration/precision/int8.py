"""Explicit INT8 (Q/DQ) graphs with ONNX Runtime's static quantiser, shaped for TensorRT.

TensorRT's explicit quantization wants symmetric INT8 (zero point 0), per-channel weight scales
on the output-channel axis, FP32 biases (it quantises them itself) and Q/DQ only where it can
fuse them: we quantise the inputs of the weighted ops, as NVIDIA's placement guide recommends,
never their outputs, and nothing the exit policy tail reads.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import numpy as np

from mesc.calibration.precision.nodes import tail_tensors
from mesc.errors import MescError
from mesc.lazy import require

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QUANT_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
WEIGHTED_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
OPSET_RANGE = (13, 17)  # 13: per-channel Q/DQ; 17: the newest TensorRT 8.5/8.6 parse


def _reader_class():
    q = require("onnxruntime.quantization", extra="core", purpose="INT8 calibration")

    class FeedReader(q.CalibrationDataReader):
        """Feeds a segment the activations the FP32 segments before it produced."""

        def __init__(self, feeds):
            self.feeds = list(feeds)
            self.pos = 0

        def get_next(self):
            if self.pos >= len(self.feeds):
                return None
            self.pos += 1
            return self.feeds[self.pos - 1]

        def rewind(self):
            self.pos = 0

    return FeedReader


def static_options(quantize_static) -> dict:
    """Keyword arguments for ``quantize_static`` that only some onnxruntime releases take.

    ``calibration_providers`` is in 1.21 to 1.32, not in 1.16.3 or 1.17.0 (a TypeError there);
    without it, calibration runs on the CPU provider anyway.
    """
    params = inspect.signature(quantize_static).parameters
    return {"calibration_providers": ["CPUExecutionProvider"]} if "calibration_providers" in params else {}


def quantize_segment(model, feeds, exclude_nodes, method: str = "minmax", where: str = ""):
    """Q/DQ copy of ``model`` calibrated on ``feeds`` (list of input dicts); checked for TensorRT."""
    q = require("onnxruntime.quantization", extra="core", purpose="INT8 calibration")
    onnx = require("onnx")
    if method not in METHODS:
        raise MescError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if not feeds:
        raise MescError(f"{where}: no calibration data")
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "CalibPercentile": 99.99, "CalibNumBins": 2048,
             # QDQ Conv/Gemm/MatMul also quantise their output unless told not to (onnxruntime
             # 1.16-1.32 take this per op type only): the exit's logits would reach the policy in 8 bits
             "OpTypesToExcludeOutputQuantization": list(QUANT_OPS)}
    with tempfile.TemporaryDirectory(prefix="mesc-int8-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        try:
            q.quantize_static(
                str(src), str(dst), _reader_class()(feeds), quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=QUANT_OPS, per_channel=True, reduce_range=False,
                activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                nodes_to_exclude=list(exclude_nodes),
                calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                extra_options=extra, **static_options(q.quantize_static))
        except MescError:
            raise
        except Exception as err:
            raise MescError(f"{where}: INT8 quantization failed: {err}") from err
        out = onnx.load(str(dst))
    check_qdq(out, exclude_nodes, where)
    return out


def _initializers(model) -> dict:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def check_qdq(model, tail_nodes=(), where: str = "") -> dict:
    """Raise :class:`MescError` where the Q/DQ graph breaks TensorRT's rules; returns counts.

    Rules: opset 13..17; every scale finite and > 0 (a zero scale means the tensor was constant
    on the calibration set, e.g. a dead channel, and would divide by zero); INT8 zero points, all
    0; weights of Conv/Gemm per-channel on axis 0 (1 for ConvTranspose); biases FP32; no Q/DQ
    reads or writes the exit's logits or anything the policy tail (``tail_nodes``) reads.
    """
    pre = f"{where}: " if where else ""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise MescError(f"{pre}the INT8 graph has opset {opset}; TensorRT explicit INT8 needs "
                        f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}")
    inits = _initializers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    guarded = tail_tensors(model, tail_nodes, WEIGHTED_INPUT)
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0, "per_channel_weights": 0}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        counts[node.op_type] += 1
        tensor = node.input[0]
        touched = sorted(guarded.intersection([tensor, *node.output]))
        if touched:
            raise MescError(f"{pre}{node.op_type} '{node.name}' quantizes '{touched[0]}', which the exit "
                            f"policy reads: the policy must see FP32 logits")
        scale = inits.get(node.input[1])
        if scale is None:
            raise MescError(f"{pre}tensor '{tensor}': its scale '{node.input[1]}' is not a constant")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise MescError(f"{pre}tensor '{tensor}' got quantization scale {scale.ravel()[:4].tolist()} "
                            f"(zero or non-finite): it is constant or overflows on the calibration images; "
                            f"use more varied images or exclude it")
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None or zp.dtype != np.int8:
            raise MescError(f"{pre}tensor '{tensor}': zero point must be an int8 constant, "
                            f"got {None if zp is None else zp.dtype}")
        if np.any(zp != 0):
            raise MescError(f"{pre}tensor '{tensor}': TensorRT needs symmetric quantization (zero point 0)")
    for node in model.graph.node:
        idx = WEIGHTED_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        w = producer.get(node.input[idx])
        if w is not None and w.op_type == "DequantizeLinear" and w.input[0] in inits:
            scale = inits[w.input[1]]
            axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
            want = 1 if node.op_type == "ConvTranspose" else 0
            if node.op_type in ("Conv", "ConvTranspose") and (scale.size < 2 and inits[w.input[0]].shape[want] > 1
                                                              or scale.size > 1 and axis != want):
                raise MescError(f"{pre}weights of '{node.name}' must be quantized per output channel (axis {want})")
            counts["per_channel_weights"] += int(scale.size > 1)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2 and node.input[2]:
            b = producer.get(node.input[2])
            if b is not None and b.op_type == "DequantizeLinear":
                raise MescError(f"{pre}bias of '{node.name}' is quantized; TensorRT wants it FP32")
    return counts
