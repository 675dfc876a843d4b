"""Device-to-host reads, and device input, for runners whose tensors live on one CUDA stream.

A read is queued (:meth:`StreamReads.fetch`: ``cudaMemcpyAsync`` into pinned memory, which a
pageable copy would first stage and wait for) and waited for when its value is wanted
(:meth:`Pending.get`); one stream synchronise serves every read queued before it, so the
pipeline can queue an exit's confidences and its labels and wait once. The pinned buffers are
fixed per (source address, size): after the first call of a shape a read allocates nothing.
Input already in device memory (:class:`~mesc.runtime.device_input.DeviceArray`) is copied device
to device into a buffer fixed per shape, after the producer's stream (:meth:`StreamReads.upload_device`).
"""

from __future__ import annotations

import numpy as np

from mesc.runtime import cuda


class Pending:
    """A host array that is ready once the stream has reached the copy into it."""

    __slots__ = ("_reads", "_seq", "_view")

    def __init__(self, reads, seq: int, view):
        self._reads, self._seq, self._view = reads, seq, view

    def get(self) -> np.ndarray:
        """The array (a copy of its own: the pinned buffer is reused by the next read)."""
        if self._reads is not None:
            self._reads.wait_for(self._seq)
        return np.array(self._view)


class Ready(Pending):
    """A read that was done on the host already."""

    def __init__(self, array):
        super().__init__(None, 0, array)

    def get(self) -> np.ndarray:
        return self._view


class StreamReads:
    """Mixin: ``fetch``/``download`` through pinned memory on ``self.stream``; the runner gives
    ``_device_view(handle) -> (address, shape, dtype)`` and calls ``_open_reads``/``_close_reads``."""

    def _open_reads(self, stream) -> None:
        self._device_inputs: dict = {}
        self._input_event = None
        self._pinned: dict = {}
        self._queued = 0  # copies queued on the stream so far
        self._waited = 0  # of which the host has seen the end

    def _close_reads(self) -> None:
        for buf in self._pinned.values():
            buf.free()
        if self._input_event is not None:
            self._input_event.free()
        self._pinned, self._device_inputs, self._input_event = {}, {}, None

    def upload_device(self, array, slot: str = "input"):
        """A :class:`~mesc.runtime.device_input.DeviceArray` copied device to device into the
        buffer fixed for (``slot``, shape, dtype), queued after the work pending on the stream its
        producer names (the device waits on an event; the host does not)."""
        if array.stream is not None and int(array.stream) != self.stream.ptr:
            if self._input_event is None:
                self._input_event = cuda.Event()
            self._input_event.record(int(array.stream))
            self.stream.wait(self._input_event)
        key = (slot, array.shape, array.dtype.str, self.lane)
        handle = self._device_inputs.get(key)
        if handle is None:
            handle = self._device_inputs[key] = self._new_device_input(array.shape, array.dtype)
        self.stream_copy(self._device_view(handle)[0], array.ptr, array.nbytes, cuda.DEVICE_TO_DEVICE)
        return handle

    def stream_copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        cuda.memcpy(dst, src, nbytes, kind, self.stream.ptr)
        self._queued += 1

    def fetch(self, handle) -> Pending:
        ptr, shape, dtype = self._device_view(handle)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buf = self._pinned.get((ptr, nbytes))
        if buf is None:
            buf = self._pinned[(ptr, nbytes)] = cuda.PinnedBuffer(nbytes)
        self.stream_copy(buf.ptr, ptr, nbytes, cuda.DEVICE_TO_HOST)
        return Pending(self, self._queued, buf.view(shape, dtype))

    def copy_out(self, handle, rows=None):
        """Rows ``rows`` (all where None) of ``handle`` copied on the device into memory of their
        own: a :class:`~mesc.runtime.device_output.DeviceResult` the next call does not overwrite."""
        from mesc.runtime.device_output import DeviceResult, OwnedBuffer

        ptr, shape, dtype = self._device_view(handle)
        dtype = np.dtype(dtype)
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        rows = np.arange(shape[0]) if rows is None else np.asarray(rows, np.int64)
        owned = OwnedBuffer(len(rows) * row)
        cuda.copy_rows(owned.buffer.ptr, ptr, rows, row, self.stream.ptr)
        self._queued += 1
        device_type = 2 if self.device.is_cuda else 1  # DLPack: kDLCUDA, kDLCPU (tests' stand-in memory)
        return DeviceResult(owned, owned.buffer.ptr, (len(rows), *shape[1:]), dtype, device_type,
                            self.device.index if self.device.is_cuda else 0, self.stream)

    def wait_for(self, seq: int) -> None:
        """Wait (once) until the stream has done the ``seq``-th queued copy."""
        if self._waited < seq:
            self.stream.synchronize()
            self._waited = self._queued

    def download(self, handle) -> np.ndarray:
        return self.fetch(handle).get()
