"""ONNX Runtime runner: one session per segment, chained through IOBinding.

Every segment output is bound to the runner's device and handed to the next segment as the
same ``OrtValue``, so on CUDA activations never visit the host; the pipeline downloads only
what it asks for. Two ways to move tensors, named by :attr:`OrtRunner.io_path`:

* ``"direct"`` (CPU; CUDA with onnxruntime < 1.17 or the TensorRT EP): an IOBinding per run,
  outputs allocated by onnxruntime inside ``Run``, which synchronises the session's own stream;
  uploads and downloads through numpy, the row gather a one-node Gather session.
* ``"stream"`` (CUDA with onnxruntime >= 1.17): every session queues on one CUDA stream
  (``user_compute_stream``, the runner's own or the caller's) and ``Run`` returns without a sync
  (run option ``disable_synchronize_execution_providers``); each segment has one IOBinding per
  input shapes, whose first run's outputs stay bound to it (``bind_ortvalue_output``);
  uploads go through pinned memory into an OrtValue fixed per shape, reads are queued into
  pinned memory and waited for once (:class:`~mesc.runtime.backends.device_reads.StreamReads`),
  and the row gather is device-to-device copies on the stream. With onnxruntime >= 1.18 and
  ``cuda_graphs`` each binding gets its own ``gpu_graph_id``, so onnxruntime captures one CUDA
  graph per segment and batch size (``enable_cuda_graph``) and replays it.

CPU and CUDA take the same code for either path (only the device name of the bindings differs),
which is what lets the CPU tests stand for the CUDA logic: the stream path runs on the CPU too
(``io="stream"``) over a CUDA runtime stand-in whose device memory is host memory.
"""

from __future__ import annotations

import numpy as np

from mesc.lazy import require
from mesc.runtime import cuda
from mesc.runtime.backends.base import Runner, invoke_if_callable
from mesc.runtime.backends.device_reads import StreamReads
from mesc.runtime.backends.onnxrt.providers import cuda_features, ort
from mesc.runtime.devices import Device
from mesc.runtime.errors import BackendError

_GATHER_OPSET = 13
# Kept low so that the helper graph loads in every onnxruntime mesc supports (>= 1.16).
_GATHER_IR_VERSION = 8

# OrtValue.data_type() strings as numpy dtypes
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}
IO_PATHS = ("direct", "stream")


class _Binding:
    """One segment at one set of input shapes (and fetched outputs): its IOBinding, the output
    OrtValues bound to it (allocated by its first run), the inputs bound now, and the run
    options (with the CUDA graph id) of its runs."""

    __slots__ = ("io", "outputs", "inputs", "run_options")

    def __init__(self, io, outputs, run_options):
        self.io, self.outputs, self.inputs, self.run_options = io, outputs, {}, run_options


class OrtRunner(StreamReads, Runner):
    backend = "onnxruntime"

    def __init__(self, sessions, device: Device, cuda_graphs: bool = True, stream: int | None = None,
                 io: str | None = None):
        """``sessions``: a :class:`~mesc.runtime.backends.onnxrt.loader.Sessions`, or the loader
        that makes one on ``activate``. ``io``: ``"direct"`` or ``"stream"`` (see the module);
        default the stream path on CUDA where onnxruntime has it and the TensorRT EP is not used.
        ``cuda_graphs``: capture each segment per batch size (stream path, onnxruntime >= 1.18).
        ``stream``: a caller's ``cudaStream_t`` (int) for the stream path to queue on."""
        super().__init__(device)
        self._load = sessions
        self._ort = ort()
        # OrtValue / IOBinding device names: "cuda" for every CUDA-backed provider.
        self._dev_type = "cuda" if device.is_cuda else "cpu"
        self._dev_id = device.index if device.is_cuda else 0
        features = cuda_features()
        if io is None:
            io = "stream" if device.is_cuda and features["stream"] and not getattr(sessions, "tensorrt_ep", False) \
                and _cuda_runtime_found() else "direct"
        if io not in IO_PATHS:
            raise BackendError(f"io must be one of {', '.join(IO_PATHS)}, got {io!r}")
        self.io_path = io
        self.cuda_graphs = bool(cuda_graphs) and io == "stream" and device.is_cuda and features["graphs"]
        self._stream_ptr = stream
        self.graph_fallbacks: dict = {}

    @property
    def graph_mode(self) -> str:
        return "cuda-graphs" if self.cuda_graphs else "off"

    # lifecycle ---------------------------------------------------------------------------
    def _activate(self):
        if self.io_path == "stream":
            self.stream = cuda.Stream(self._stream_ptr)
            self._open_reads(self.stream)
            self.bindings, self.staging, self.gathered = {}, {}, {}
            self._graph_ids: dict = {}
            if self.device.is_cuda and hasattr(self._load, "compute_stream"):
                self._load.compute_stream, self._load.cuda_graphs = self.stream.ptr, self.cuda_graphs
        self._loaded = invoke_if_callable(self._load)
        self.sessions = self._loaded.by_segment
        self.graph_fallbacks = dict(getattr(self._loaded, "graph_fallbacks", None) or {})
        self._gathers = {}

    def _deactivate(self):
        if self.io_path == "stream":
            self.stream.synchronize()
            self.bindings, self.staging, self.gathered = {}, {}, {}  # onnxruntime frees the OrtValues
            self._close_reads()
            self.stream.free()
        self._loaded = None
        self.sessions = {}
        self._gathers = {}

    # tensors -------------------------------------------------------------------------------
    def upload(self, array, slot="input"):
        if self.io_path == "direct":
            return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._dev_type, self._dev_id)
        host = np.asarray(array)
        key = (slot, host.shape, host.dtype.str, self.lane)
        staged = self.staging.get(key)
        if staged is None:
            value = self._new_value(host.shape, host.dtype)
            staged = self.staging[key] = (cuda.PinnedBuffer(max(host.nbytes, 1)), value)
        pinned, value = staged
        # the previous copy out of this pinned buffer ended at the previous call's last wait
        np.copyto(pinned.view(host.shape, host.dtype), host)
        self.stream_copy(value.data_ptr(), pinned.ptr, host.nbytes, cuda.HOST_TO_DEVICE)
        return value

    def _new_value(self, shape, dtype):
        return self._ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype).type, self._dev_type,
                                                               self._dev_id)

    def _new_device_input(self, shape, dtype):
        return self._new_value(shape, dtype)

    def copy_out(self, handle, rows=None):
        if self.io_path == "direct":
            return Runner.copy_out(self, handle, rows)
        return StreamReads.copy_out(self, handle, rows)

    def upload_device(self, array, slot="input"):
        if self.io_path == "direct":
            raise BackendError("device input needs the stream path (onnxruntime >= 1.17 on CUDA)")
        return StreamReads.upload_device(self, array, slot)

    def _device_view(self, handle):
        return handle.data_ptr(), tuple(handle.shape()), _NP_TYPES[handle.data_type()]

    def download(self, handle):
        if self.io_path == "direct":
            return handle.numpy()
        return StreamReads.download(self, handle)

    def fetch(self, handle):
        if self.io_path == "direct":
            return Runner.fetch(self, handle)
        return StreamReads.fetch(self, handle)

    def shape(self, handle):
        return tuple(handle.shape())

    def run(self, segment, feeds, outputs):
        sess = self.sessions[segment.name]
        if self.io_path == "stream":
            return self._run_bound(segment, sess, feeds, outputs)
        io = sess.io_binding()
        for name, value in feeds.items():
            io.bind_ortvalue_input(name, value)
        for name in outputs:
            io.bind_output(name, self._dev_type, self._dev_id)
        sess.run_with_iobinding(io)
        return dict(zip(outputs, io.get_outputs()))

    def _run_bound(self, segment, sess, feeds, outputs):
        name = segment.name
        shapes = tuple((n, tuple(v.shape())) for n, v in sorted(feeds.items()))
        key = (name, shapes, tuple(outputs), self.lane)
        b = self.bindings.get(key)
        if b is None:
            b = self.bindings[key] = self._bind(segment, sess, outputs)
        for n, value in feeds.items():
            if b.inputs.get(n) is not value:
                if n in b.inputs and self.cuda_graphs:
                    # a graph captured with the old input's address would read it: a new graph id
                    b.run_options = self._run_options(name)
                b.io.bind_ortvalue_input(n, value)
                b.inputs[n] = value  # held: the binding reads its memory
        sess.run_with_iobinding(b.io, b.run_options)
        if b.outputs is None:
            # the first run allocated the outputs (their shapes follow from the inputs'): they are
            # the binding's from now on
            b.outputs = dict(zip(outputs, b.io.get_outputs()))
            for n, v in b.outputs.items():
                b.io.bind_ortvalue_output(n, v)
        return {n: b.outputs[n] for n in outputs}

    def _bind(self, segment, sess, outputs) -> _Binding:
        io = sess.io_binding()
        for n in outputs:
            io.bind_output(n, self._dev_type, self._dev_id)
        return _Binding(io, None, self._run_options(segment.name))

    def _run_options(self, segment: str):
        ro = self._ort.RunOptions()
        # the host waits where it reads (a queued copy into pinned memory), not after every Run
        ro.add_run_config_entry("disable_synchronize_execution_providers", "1")
        if self.cuda_graphs and segment not in self.graph_fallbacks:
            # one graph per binding (segment and batch size); 0 is onnxruntime's own, -1 "no graph"
            gid = self._graph_ids[segment] = self._graph_ids.get(segment, 0) + 1
            ro.add_run_config_entry("gpu_graph_id", str(gid))
        return ro

    def take(self, handle, rows):
        if self.io_path == "stream":
            rows = np.asarray(rows, np.int64)
            ptr, shape, dtype = self._device_view(handle)
            key = (ptr, len(rows))
            out = self.gathered.get(key)
            if out is None:
                out = self.gathered[key] = self._new_value((len(rows), *shape[1:]), dtype)
            row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
            cuda.copy_rows(out.data_ptr(), ptr, rows, row, self.stream.ptr)
            self._queued += 1
            return out
        return self._take_with_gather(handle, rows)

    def _take_with_gather(self, handle, rows):
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


def _cuda_runtime_found() -> bool:
    # the stream path copies through mesc's CUDA access path; without a CUDA runtime there (no
    # cuda-python, no libcudart found) onnxruntime's synchronous path still works
    from mesc.runtime.errors import DeviceError

    try:
        cuda.runtime()
    except DeviceError:
        return False
    return True


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
