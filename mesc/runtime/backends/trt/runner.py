"""TensorRT runner: a package's engines (see :mod:`.loader`), chained on one CUDA stream.

Written against TensorRT's name-based I/O API (8.5 and later, through 10.x/11.x):
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``. Device memory, copies,
graphs and the stream come from :mod:`mesc.runtime.cuda` (cuda-python or libcudart), not torch.

What a call costs once warm (the first call of each batch size allocates):

* **fixed buffers**: each segment's outputs live in device buffers allocated once per
  (segment, input shapes) and handed to the next segment by address; the input is copied into
  a device buffer fixed per shape through a pinned staging buffer; a row gather writes into a
  buffer fixed per (source, row count). Tensor addresses and input shapes are set on a context
  only where they differ from what it holds, so a repeated call sets none and asks no shape.
* **one stream, one wait per read**: every copy and segment is queued on the runner's one stream
  (its own, or the caller's); the host waits only where it reads (:meth:`TrtRunner.fetch`),
  through pinned memory.
* **CUDA graphs** (``cuda_graphs=True``): a segment's second run at the same shapes and
  addresses captures ``execute_async_v3`` on the stream into a graph (as trtexec's
  ``--useCudaGraph`` does: a first run outside capture, then begin capture, enqueue, end
  capture, instantiate) and later runs launch it. TensorRT bakes the shapes into the enqueued
  work, so a graph is replayed only while its context still holds the shapes it was captured
  with; a segment whose context changes shapes (another batch size) drops its graph and is
  captured again once its runs repeat. A segment that cannot be captured runs uncaptured; why is
  in :attr:`TrtRunner.graph_fallbacks` and said once in a warning.

A package's entry segment takes uint8 images (its engine's input is ``DataType.UINT8``): ONNX
networks with UINT8 I/O import from TensorRT 8.5 on (onnx-tensorrt's 8.5 GA changelog), the
oldest version mesc supports, and ``mesc build`` refuses an older one naming ``--host-normalize``
(:func:`mesc.engines.targets.check_onnx_ops`). The entry builds FP32 on the GPU in every build
(:func:`mesc.engines.build.entry_plan`). Its buffers are fixed like any segment's.

Enqueueing returns before the GPU has run a segment, so host clocks around ``run`` see the
enqueue only; with :attr:`TrtRunner.timing` on (``Pipeline.time_segments`` sets it) each run is
bracketed by CUDA events (:class:`~mesc.runtime.clock.SegmentEvents`) and
:meth:`TrtRunner.segment_times` reports device milliseconds.
"""

from __future__ import annotations

import warnings

import numpy as np

from mesc.runtime import cuda, devices
from mesc.runtime.backends.base import Runner, invoke_if_callable
from mesc.runtime.backends.device_reads import StreamReads
from mesc.runtime.backends.trt import compat
from mesc.runtime.backends.trt.loader import PURPOSE, numpy_dtype
from mesc.runtime.clock import SegmentEvents
from mesc.runtime.errors import BackendError, DeviceError


class DeviceTensor:
    """A tensor in a device buffer the runner owns (freed when the runner deactivates)."""

    __slots__ = ("ptr", "shape", "dtype", "nbytes", "buffer")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.buffer = cuda.DeviceBuffer(self.nbytes)
        self.ptr = self.buffer.ptr

    def __repr__(self):
        return f"<DeviceTensor {self.dtype} {self.shape} at {self.ptr:#x}>"


class _Binding:
    """One segment at one set of input shapes: its output tensors, and its graph once captured."""

    __slots__ = ("outputs", "graph", "runs", "addresses")

    def __init__(self, outputs: dict):
        self.outputs = outputs
        self.graph = None
        self.runs = 0  # uncaptured runs at these addresses since the context last changed shapes
        self.addresses: dict = {}  # tensor name -> address of the runs counted (and of the graph)


class TrtRunner(StreamReads, Runner):
    backend = "tensorrt"
    io_path = "stream"

    def __init__(self, engines, device, cuda_graphs: bool = True, stream: int | None = None):
        """``engines``: an :class:`~mesc.runtime.backends.trt.loader.Engines`, or the loader that
        makes one on ``activate`` (on this runner's device). ``cuda_graphs``: capture each
        segment's run per batch size and replay it. ``stream``: a caller's ``cudaStream_t`` (an
        int) to queue all work on, instead of a stream of the runner's own."""
        super().__init__(device)
        self._load = engines
        self.trt = compat.tensorrt(PURPOSE)
        self.cuda_graphs = bool(cuda_graphs)
        self._stream_ptr = stream
        self.timing = False
        self.graph_fallbacks: dict = {}  # segment -> why it runs uncaptured

    @property
    def graph_mode(self) -> str:
        return "cuda-graphs" if self.cuda_graphs else "off"

    def _activate(self):
        trt = self.trt
        devices.set_cuda_device(self.device.index)
        loaded = invoke_if_callable(self._load)
        self._runtime, self.engines = loaded.runtime, dict(loaded.by_segment)
        self.contexts, self.io = {}, {}
        for name, engine in self.engines.items():
            context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context for segment '{name}' "
                                   f"(out of device memory?)")
            self.contexts[name] = context
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self.io[name] = {
                "inputs": [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
                "outputs": [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT],
                "dtype": {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names},
            }
        self._open_memory(cuda.Stream(self._stream_ptr))

    def _open_memory(self, stream) -> None:
        """The stream and the (empty) tables of fixed buffers; apart so tests can open them alone."""
        self.stream = stream
        self.events = SegmentEvents()
        self.bindings: dict = {}  # (segment, input shapes) -> _Binding
        self.context_state: dict = {}  # segment -> (input shapes, {tensor: address}) the context holds
        self.staging: dict = {}  # (slot, shape, dtype) -> (PinnedBuffer, DeviceTensor) of uploads
        self.gathered: dict = {}  # (source address, rows) -> DeviceTensor of row gathers
        self._open_reads(self.stream)

    def _deactivate(self):
        self.stream.synchronize()
        self._close_memory()
        # contexts before engines before the runtime: TensorRT's destruction order
        self.contexts.clear()
        self.engines.clear()
        del self._runtime

    def _close_memory(self) -> None:
        self.events.close()
        for b in self.bindings.values():
            if b.graph is not None:
                b.graph.free()
            for t in b.outputs.values():
                t.buffer.free()
        for pinned, t in self.staging.values():
            pinned.free()
            t.buffer.free()
        for t in [*self.gathered.values(), *self._device_inputs.values()]:
            t.buffer.free()
        self._close_reads()
        self.bindings, self.staging, self.gathered, self.context_state = {}, {}, {}, {}
        self.stream.free()

    # tensors ---------------------------------------------------------------------------------
    def upload(self, array, slot: str = "input"):
        """``array`` into the device buffer fixed for (``slot``, its shape, dtype), through pinned
        memory: a later upload to the same slot overwrites it in place (same address)."""
        host = np.asarray(array)
        key = (slot, host.shape, host.dtype.str, self.lane)
        staged = self.staging.get(key)
        if staged is None:
            t = DeviceTensor(host.shape, host.dtype)
            staged = self.staging[key] = (cuda.PinnedBuffer(t.nbytes), t)
        pinned, t = staged
        # the previous copy out of this pinned buffer ended at the previous call's last wait
        np.copyto(pinned.view(t.shape, t.dtype), host)
        self.stream_copy(t.ptr, pinned.ptr, t.nbytes, cuda.HOST_TO_DEVICE)
        return t

    def shape(self, handle):
        return handle.shape

    def _new_device_input(self, shape, dtype):
        return DeviceTensor(shape, dtype)

    def _device_view(self, handle):
        return handle.ptr, handle.shape, handle.dtype

    def take(self, handle, rows):
        rows = np.asarray(rows, np.int64)
        row = handle.nbytes // max(handle.shape[0], 1)
        key = (handle.ptr, len(rows))
        out = self.gathered.get(key)
        if out is None:
            out = self.gathered[key] = DeviceTensor((len(rows), *handle.shape[1:]), handle.dtype)
        cuda.copy_rows(out.ptr, handle.ptr, rows, row, self.stream.ptr)
        return out

    # segments --------------------------------------------------------------------------------
    def run(self, segment, feeds, outputs):
        name = segment.name
        ctx, io = self.contexts[name], self.io[name]
        shapes = []
        for tname in io["inputs"]:
            h = feeds.get(tname)
            if h is None:
                raise BackendError(f"segment '{name}': no value for engine input '{tname}'")
            if h.dtype != io["dtype"][tname]:
                raise BackendError(f"segment '{name}': engine input '{tname}' is {io['dtype'][tname]}, got {h.dtype}")
            shapes.append(h.shape)
        shapes = tuple(shapes)
        b = self._bind(name, ctx, io, shapes)
        addresses = {t: feeds[t].ptr for t in io["inputs"]}
        addresses.update({t: v.ptr for t, v in b.outputs.items()})
        self._set_addresses(name, ctx, addresses)
        if b.addresses != addresses:
            if b.graph is not None:  # captured with other addresses
                b.graph.free()
            b.graph, b.runs, b.addresses = None, 0, addresses
        if self.timing:
            self.events.record(name, False, self.stream.ptr)
        self._execute(name, ctx, b)
        if self.timing:
            self.events.record(name, True, self.stream.ptr)
        return {n: b.outputs[n] for n in outputs}

    def _bind(self, name, ctx, io, shapes) -> _Binding:
        """The segment's binding for these input shapes, the context set to them."""
        state = self.context_state.get(name)
        if state is None or state[0] != shapes:
            for tname, shape in zip(io["inputs"], shapes):
                if (state is None or tuple(ctx.get_tensor_shape(tname)) != shape) and \
                        not ctx.set_input_shape(tname, shape):
                    raise BackendError(f"segment '{name}': the engine does not accept shape {shape} for "
                                       f"'{tname}' (outside its optimisation profile?)")
            # graphs of this segment were captured under the shapes the context held before
            for (seg, _, _), other in self.bindings.items():
                if seg == name and other.graph is not None:
                    other.graph.free()
                    other.graph = None
                if seg == name:
                    other.runs = 0
            self.context_state[name] = state = (shapes, state[1] if state else {})
        b = self.bindings.get((name, shapes, self.lane))
        if b is None:
            b = self.bindings[(name, shapes, self.lane)] = _Binding(
                {t: DeviceTensor(tuple(ctx.get_tensor_shape(t)), io["dtype"][t]) for t in io["outputs"]})
        return b

    def _set_addresses(self, name, ctx, addresses: dict) -> None:
        """Set the tensor addresses the context does not hold already (a captured graph keeps
        the addresses it was captured with, whatever the context holds later)."""
        held = self.context_state[name][1]
        for tname, ptr in addresses.items():
            if held.get(tname) != ptr:
                ctx.set_tensor_address(tname, ptr)
                held[tname] = ptr

    def _execute(self, name, ctx, b: _Binding) -> None:
        stream = self.stream.ptr
        if b.graph is not None:
            b.graph.launch(stream)
            return
        if self.cuda_graphs and b.runs >= 1 and name not in self.graph_fallbacks:
            try:
                b.graph = cuda.Graph(stream, lambda: self._enqueue(name, ctx))
            except DeviceError as err:
                self.graph_fallbacks[name] = str(err)
                warnings.warn(f"segment '{name}' runs without a CUDA graph: {err}", stacklevel=4)
            else:
                b.graph.launch(stream)
                return
        self._enqueue(name, ctx)
        b.runs += 1

    def _enqueue(self, name, ctx) -> None:
        if not ctx.execute_async_v3(self.stream.ptr):
            raise BackendError(f"segment '{name}': TensorRT execution failed (see the TensorRT log)")

    def segment_times(self):
        """Device milliseconds (CUDA events) of each segment's latest run since the last read."""
        return self.events.elapsed() or None
