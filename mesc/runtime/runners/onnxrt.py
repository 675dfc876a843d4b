"""ONNX Runtime runner: one session per segment, chained through IOBinding.

Every segment output is bound to the runner's device and handed to the next segment as the
same ``OrtValue``, so on CUDA activations never visit the host; the pipeline downloads only
what it asks for. CPU and CUDA take the same code path (only the device name of the bindings
differs), which is what lets the CPU tests stand for the CUDA logic.
"""

from __future__ import annotations

import numpy as np

from mesc.lazy import require
from mesc.runtime.devices import Device, check_cuda_device
from mesc.runtime.errors import BackendError, DeviceError, MissingDependencyError
from mesc.runtime.runners.base import Runner

_GATHER_OPSET = 13
# Kept low so that the helper graph loads in every onnxruntime mesc supports (>= 1.16).
_GATHER_IR_VERSION = 8


def _ort():
    return require("onnxruntime", extra="core", purpose="the ONNX Runtime backend")


def session_options(threads: int | None = None, spin: bool = False, optimize: bool = True):
    """Options for chained sessions.

    Each session has its own intra-op pool; by default its threads spin for a while after a
    run, and in a chain those spinning threads compete with the next segment's pool for the
    same cores. Turning spinning off is what keeps the chain within a few per cent of one
    monolithic session on CPU (see ``mesc.benchmarks.chain_overhead``).
    """
    ort = _ort()
    so = ort.SessionOptions()
    # optimize=False keeps Q/DQ pairs as separate float ops (TensorRT's numerics): ORT's fused
    # QLinearConv saturates int16 sums on x86 without VNNI and would misreport INT8 accuracy.
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    return so


def providers_for(device: Device, tensorrt_ep: bool = False) -> list:
    ort = _ort()
    available = ort.get_available_providers()
    if not device.is_cuda:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise MissingDependencyError(
            f"device {device} needs onnxruntime with CUDA, but the installed onnxruntime has only "
            f"{available}; install it with: pip install 'mesc[gpu]' (and uninstall the CPU-only onnxruntime)")
    check_cuda_device(device)
    chosen = [("CUDAExecutionProvider", {"device_id": device.index}), "CPUExecutionProvider"]
    if tensorrt_ep:
        if "TensorrtExecutionProvider" not in available:
            raise MissingDependencyError(
                "the TensorRT execution provider is not in this onnxruntime build; install onnxruntime-gpu "
                "and TensorRT: pip install 'mesc[gpu,trt]'")
        chosen.insert(0, ("TensorrtExecutionProvider", {"device_id": device.index}))
    return chosen


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, pkg, device: Device, threads: int | None = None, spin: bool = False,
                 tensorrt_ep: bool = False, segments: list[str] | None = None,
                 files: dict | None = None, optimize: bool = True):
        """``files`` maps segment names to other ONNX graphs of the same I/O (the prepared FP16
        or INT8 ones) to run instead of the package's FP32 graphs."""
        super().__init__(pkg, device)
        self.threads, self.spin, self.tensorrt_ep = threads, spin, tensorrt_ep
        self.files, self.optimize = dict(files or {}), optimize
        self._only = set(segments) if segments else None
        self._ort = _ort()
        self.providers = providers_for(device, tensorrt_ep)
        # OrtValue / IOBinding device names: "cuda" for every CUDA-backed provider.
        self._dev_type = "cuda" if device.is_cuda else "cpu"
        self._dev_id = device.index if device.is_cuda else 0

    # lifecycle ---------------------------------------------------------------------------
    def _activate(self):
        so = session_options(self.threads, self.spin, self.optimize)
        self.sessions = {}
        for seg in self.pkg.segments:
            if self._only is not None and seg["name"] not in self._only:
                continue
            path = self.files.get(seg["name"], self.pkg.path(seg["file"]))
            self.sessions[seg["name"]] = self._session(str(path), so, seg["name"])
        self._gathers = {}

    def _deactivate(self):
        self.sessions = {}
        self._gathers = {}

    def _session(self, model, so, what):
        try:
            sess = self._ort.InferenceSession(model, sess_options=so, providers=self.providers)
        except Exception as err:
            if self.device.is_cuda:
                raise DeviceError(f"onnxruntime cannot use {self.device} for {what}: {err}") from err
            raise BackendError(f"onnxruntime cannot load {what}: {err}") from err
        if self.device.is_cuda and "CUDAExecutionProvider" not in sess.get_providers():
            # onnxruntime falls back to CPU silently when the CUDA libraries fail to load.
            raise DeviceError(f"onnxruntime fell back to {sess.get_providers()} for {what}: the CUDA "
                              f"provider did not load (CUDA/cuDNN libraries missing or incompatible?)")
        return sess

    # tensors -------------------------------------------------------------------------------
    def upload(self, array):
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._dev_type, self._dev_id)

    def download(self, handle):
        return handle.numpy()

    def shape(self, handle):
        return tuple(handle.shape())

    def run(self, segment, feeds, outputs):
        sess = self.sessions[segment["name"]]
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
            sess = self._gathers[dtype] = self._session(_gather_model(dtype), session_options(1), "the row gather")
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
