"""ONNX Runtime runner: one session per segment, chained through IOBinding.

Every segment output is bound to the runner's device and handed to the next segment as the
same ``OrtValue``, so on CUDA activations never visit the host; the pipeline downloads only
what it asks for. CPU and CUDA take the same code path (only the device name of the bindings
differs), which is what lets the CPU tests stand for the CUDA logic.
"""

from __future__ import annotations

import numpy as np

from mesc.lazy import require
from mesc.runtime.backends.base import Runner, invoke_if_callable
from mesc.runtime.backends.onnxrt.providers import ort
from mesc.runtime.devices import Device

_GATHER_OPSET = 13
# Kept low so that the helper graph loads in every onnxruntime mesc supports (>= 1.16).
_GATHER_IR_VERSION = 8


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, sessions, device: Device):
        """``sessions``: a :class:`~mesc.runtime.backends.onnxrt.loader.Sessions`, or the loader
        that makes one on ``activate``."""
        super().__init__(device)
        self._load = sessions
        self._ort = ort()
        # OrtValue / IOBinding device names: "cuda" for every CUDA-backed provider.
        self._dev_type = "cuda" if device.is_cuda else "cpu"
        self._dev_id = device.index if device.is_cuda else 0

    # lifecycle ---------------------------------------------------------------------------
    def _activate(self):
        self._loaded = invoke_if_callable(self._load)
        self.sessions = self._loaded.by_segment
        self._gathers = {}

    def _deactivate(self):
        self._loaded = None
        self.sessions = {}
        self._gathers = {}

    # tensors -------------------------------------------------------------------------------
    def upload(self, array, slot="input"):
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._dev_type, self._dev_id)

    def download(self, handle):
        return handle.numpy()

    def shape(self, handle):
        return tuple(handle.shape())

    def run(self, segment, feeds, outputs):
        sess = self.sessions[segment.name]
        io = sess.io_binding()
        for name, value in feeds.items():
            io.bind_ortvalue_input(name, value)
        for name in outputs:
            io.bind_output(name, self._dev_type, self._dev_id)
        sess.run_with_iobinding(io)
        return dict(zip(outputs, io.get_outputs()))

    def take(self, handle, rows):
        """Rows gathered by a one-node ONNX Gather session on the same device, so that a
        shrinking batch never leaves the device either."""
        dtype = handle.data_type()
        sess = self._gathers.get(dtype)
        if sess is None:
            sess = self._gathers[dtype] = self._loaded.helper(_gather_model(dtype), "the row gather")
        io = sess.io_binding()
        io.bind_ortvalue_input("x", handle)
        io.bind_ortvalue_input("rows", self.upload(np.asarray(rows, np.int64)))
        io.bind_output("y", self._dev_type, self._dev_id)
        sess.run_with_iobinding(io)
        return io.get_outputs()[0]


def _gather_model(ort_type: str) -> bytes:
    onnx = require("onnx", extra="core")
    from onnx import helper

    # OrtValue.data_type() reads "tensor(float)"; map it to the ONNX element type.
    name = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    elem = {"float": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
            "double": onnx.TensorProto.DOUBLE, "int32": onnx.TensorProto.INT32,
            "int64": onnx.TensorProto.INT64, "int8": onnx.TensorProto.INT8,
            "uint8": onnx.TensorProto.UINT8, "bool": onnx.TensorProto.BOOL}[name]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "rows"], ["y"], axis=0)], "mesc_take_rows",
        [helper.make_tensor_value_info("x", elem, None), helper.make_tensor_value_info("rows", onnx.TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _GATHER_OPSET)])
    model.ir_version = _GATHER_IR_VERSION
    return model.SerializeToString()
