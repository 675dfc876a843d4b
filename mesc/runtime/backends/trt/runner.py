"""TensorRT runner: a package's engines (see :mod:`.loader`), chained on one CUDA stream.

Written against TensorRT's name-based I/O API (8.5 and later, through 10.x/11.x):
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``. Device memory, copies and
the stream come from :mod:`mesc.runtime.cuda` (cuda-python or libcudart), not torch. Each output
is a pooled device buffer handed to the next segment by address: nothing is copied between
segments, and buffers are reused across calls of the same shapes.

Enqueueing returns before the GPU has run a segment, so host clocks around ``run`` see the
enqueue only; each segment's run is bracketed by CUDA events (the segment clock's
:class:`~mesc.runtime.clock.SegmentEvents`) and :meth:`TrtRunner.segment_times` reports device
milliseconds.
"""

from __future__ import annotations

import numpy as np

from mesc.runtime import cuda, devices
from mesc.runtime.backends.base import Runner, invoke_if_callable
from mesc.runtime.backends.trt import compat
from mesc.runtime.backends.trt.loader import PURPOSE, numpy_dtype
from mesc.runtime.clock import SegmentEvents
from mesc.runtime.errors import BackendError


class BufferPool:
    """Device buffers by size, reused across segments and calls (allocated once per shape)."""

    def __init__(self):
        self.free: dict[int, list] = {}
        self.all: list = []

    def acquire(self, nbytes: int) -> cuda.DeviceBuffer:
        blocks = self.free.get(nbytes)
        if blocks:
            return blocks.pop()
        block = cuda.DeviceBuffer(nbytes)
        self.all.append(block)
        return block

    def release(self, nbytes: int, block) -> None:
        self.free.setdefault(nbytes, []).append(block)

    def close(self):
        for block in self.all:
            block.free()
        self.all, self.free = [], {}


class DeviceTensor:
    """A tensor in a pooled device buffer; the buffer returns to the pool when the handle
    goes. Reuse is safe without a sync: every kernel and copy is on the runner's one stream."""

    __slots__ = ("ptr", "shape", "dtype", "_pool", "_block", "_nbytes", "_keep")

    def __init__(self, pool, shape, dtype, keep=None):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self._nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._pool, self._block, self._keep = pool, pool.acquire(self._nbytes), keep
        self.ptr = self._block.ptr

    @property
    def nbytes(self):
        return self._nbytes

    def __del__(self):
        if self._pool is not None and self._pool.all:
            self._pool.release(self._nbytes, self._block)
            self._pool = None


class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engines, device):
        """``engines``: an :class:`~mesc.runtime.backends.trt.loader.Engines`, or the loader that
        makes one on ``activate`` (on this runner's device)."""
        super().__init__(device)
        self._load = engines
        self.trt = compat.tensorrt(PURPOSE)

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
        self.stream = cuda.Stream()
        self.pool = BufferPool()
        self.events = SegmentEvents()

    def _deactivate(self):
        self.stream.synchronize()
        self.events.close()
        self.pool.close()
        self.stream.free()
        # contexts before engines before the runtime: TensorRT's destruction order
        self.contexts.clear()
        self.engines.clear()
        del self._runtime

    # tensors ---------------------------------------------------------------------------------
    def upload(self, array):
        host = np.ascontiguousarray(array)
        t = DeviceTensor(self.pool, host.shape, host.dtype, keep=host)
        self._copy(t.ptr, host.ctypes.data, t.nbytes, cuda.HOST_TO_DEVICE)
        return t

    def download(self, handle):
        host = np.empty(handle.shape, handle.dtype)
        self._copy(host.ctypes.data, handle.ptr, handle.nbytes, cuda.DEVICE_TO_HOST)
        self.stream.synchronize()
        return host

    def shape(self, handle):
        return handle.shape

    def take(self, handle, rows):
        rows = np.asarray(rows, np.int64)
        row = handle.nbytes // max(handle.shape[0], 1)
        out = DeviceTensor(self.pool, (len(rows), *handle.shape[1:]), handle.dtype)
        # one device-to-device copy per run of consecutive rows (NCHW rows are contiguous)
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end] != rows[end - 1] + 1:
                self._copy(out.ptr + start * row, handle.ptr + int(rows[start]) * row, (end - start) * row,
                           cuda.DEVICE_TO_DEVICE)
                start = end
        return out

    def _copy(self, dst, src, nbytes, kind):
        cuda.memcpy(dst, src, nbytes, kind, stream_ptr=self.stream.ptr)

    def run(self, segment, feeds, outputs):
        name = segment.name
        ctx, io = self.contexts[name], self.io[name]
        for tname in io["inputs"]:
            h = feeds.get(tname)
            if h is None:
                raise BackendError(f"segment '{name}': no value for engine input '{tname}'")
            if h.dtype != io["dtype"][tname]:
                raise BackendError(f"segment '{name}': engine input '{tname}' is {io['dtype'][tname]}, got {h.dtype}")
            if tuple(ctx.get_tensor_shape(tname)) != h.shape and not ctx.set_input_shape(tname, h.shape):
                raise BackendError(f"segment '{name}': the engine does not accept shape {h.shape} for '{tname}' "
                                   f"(outside its optimisation profile?)")
            ctx.set_tensor_address(tname, h.ptr)
        produced = {}
        for tname in io["outputs"]:
            # every output needs an address; the unfetched ones go back to the pool right after
            t = DeviceTensor(self.pool, tuple(ctx.get_tensor_shape(tname)), io["dtype"][tname])
            ctx.set_tensor_address(tname, t.ptr)
            produced[tname] = t
        self.events.record(name, False, self.stream.ptr)
        if not ctx.execute_async_v3(self.stream.ptr):
            raise BackendError(f"segment '{name}': TensorRT execution failed (see the TensorRT log)")
        self.events.record(name, True, self.stream.ptr)
        return {n: produced[n] for n in outputs}

    def segment_times(self):
        """Device milliseconds (CUDA events) of each segment's latest run since the last read."""
        return self.events.elapsed() or None
