"""TensorRT runner: a package's engines (see :mod:`.loader`), chained on one CUDA stream.

Written against TensorRT's name-based I/O API (8.5 and later, through 10.x/11.x):
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``. Device memory and the
stream come from ``polygraphy.cuda`` (pure Python over libcudart), not torch. Each output is a
pooled device buffer handed to the next segment by address: nothing is copied between
segments, and buffers are reused across calls of the same shapes.

Enqueueing returns before the GPU has run a segment, so host clocks around ``run`` see the
enqueue only; each segment's run is bracketed by CUDA events and :meth:`TrtRunner.segment_times`
reports device milliseconds.
"""

from __future__ import annotations

import ctypes

import numpy as np

from mesc.lazy import require
from mesc.runtime import devices
from mesc.runtime.backends.base import Runner, invoke_if_callable
from mesc.runtime.backends.trt import compat
from mesc.runtime.backends.trt.loader import PURPOSE
from mesc.runtime.errors import BackendError, DeviceError


# Device memory ---------------------------------------------------------------------------------

class _Pool:
    """Device buffers by size, reused across segments and calls (allocated once per shape)."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.free: dict[int, list] = {}
        self.all: list = []

    def acquire(self, nbytes: int):
        blocks = self.free.get(nbytes)
        if blocks:
            return blocks.pop()
        block = self.cuda.DeviceArray.raw((max(nbytes, 1),))
        self.all.append(block)
        return block

    def release(self, nbytes: int, block) -> None:
        self.free.setdefault(nbytes, []).append(block)

    def close(self):
        for block in self.all:
            block.free()
        self.all, self.free = [], {}


class _SegmentEvents:
    """A start/end CUDA event pair per segment, recorded on the runner's stream around the
    segment's latest run (libcudart through ctypes: every call returns 0 on success)."""

    def __init__(self, lib):
        self.lib, self.pairs, self.pending = lib, {}, []

    def _check(self, err, what):
        if err != 0:
            raise BackendError(f"{what} failed (CUDA error {err})")

    def record(self, name: str, end: bool, stream_ptr: int) -> None:
        if name not in self.pairs:
            pair = (ctypes.c_void_p(), ctypes.c_void_p())
            for ev in pair:
                self._check(self.lib.cudaEventCreate(ctypes.byref(ev)), "cudaEventCreate")
            self.pairs[name] = pair
        if not end and name not in self.pending:
            self.pending.append(name)
        self._check(self.lib.cudaEventRecord(self.pairs[name][end], ctypes.c_void_p(stream_ptr)), "cudaEventRecord")

    def elapsed(self) -> dict[str, float]:
        """Device milliseconds of each segment run since the last read (waits for them)."""
        out = {}
        for name in self.pending:
            start, end = self.pairs[name]
            ms = ctypes.c_float()
            self._check(self.lib.cudaEventSynchronize(end), "cudaEventSynchronize")
            self._check(self.lib.cudaEventElapsedTime(ctypes.byref(ms), start, end), "cudaEventElapsedTime")
            out[name] = float(ms.value)
        self.pending = []
        return out

    def close(self):
        for pair in self.pairs.values():
            for ev in pair:
                self.lib.cudaEventDestroy(ev)
        self.pairs, self.pending = {}, []


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
        self.cuda = require("polygraphy.cuda", extra="trt", purpose="device memory for the TensorRT backend")

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
                "dtype": {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names},
            }
        try:
            lib = self.cuda.wrapper().handle
        except Exception as err:  # polygraphy's own libcudart search failed
            raise DeviceError(
                f"polygraphy cannot load the CUDA runtime ({err}); polygraphy <= 0.53.3 looks for libcudart "
                f"only in LD_LIBRARY_PATH, /usr/local/cuda/lib64, /usr/lib and /lib: pip install "
                f"'polygraphy>=0.53.4' (it also searches the CUDA pip wheels) or add the directory of "
                f"{devices.cuda_runtime().source} to LD_LIBRARY_PATH") from err
        self.stream = self.cuda.Stream()
        self.pool = _Pool(self.cuda)
        self.events = _SegmentEvents(lib)

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
        self._copy(t.ptr, host.ctypes.data, t.nbytes, self.cuda.MemcpyKind.HostToDevice)
        return t

    def download(self, handle):
        host = np.empty(handle.shape, handle.dtype)
        self._copy(host.ctypes.data, handle.ptr, handle.nbytes, self.cuda.MemcpyKind.DeviceToHost)
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
                           self.cuda.MemcpyKind.DeviceToDevice)
                start = end
        return out

    def _copy(self, dst, src, nbytes, kind):
        if nbytes:
            self.cuda.wrapper().memcpy(dst=dst, src=src, nbytes=nbytes, kind=kind, stream_ptr=self.stream.ptr)

    def run(self, segment, feeds, outputs):
        name = segment["name"]
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
