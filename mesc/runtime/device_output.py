"""Results left in device memory, handed out by DLPack (``pipe(x, device_output=True)``).

The runner's output buffers are fixed and reused by the next call, so a result that stays on the
device gets memory of its own: the leaving rows are copied device to device into a new buffer,
queued on the runner's stream, and exposed as a :class:`DeviceResult` that any DLPack consumer
(``torch.from_dlpack``, ``cupy.from_dlpack``, ``numpy.from_dlpack`` for CPU memory) takes without
a copy. The stream rule: ``__dlpack__(stream=s)`` makes stream ``s`` wait for mesc's stream (an
event, no host wait); without ``stream`` mesc's stream is synchronised first. The memory is freed
when the last view of it (and every consumer's tensor) is gone.
"""

from __future__ import annotations

import ctypes

import numpy as np

from mesc.runtime import cuda, dlpack

_CODES = {"f": 2, "i": 0, "u": 1, "b": 1}
# capsules handed out and not yet deleted by their consumer: address -> what keeps them valid
_LIVE: dict = {}


class OwnedBuffer:
    """Device memory freed when the last result view of it goes."""

    __slots__ = ("buffer",)

    def __init__(self, nbytes: int):
        self.buffer = cuda.DeviceBuffer(nbytes)

    def __del__(self):
        try:
            self.buffer.free()
        except Exception:  # the process (or the CUDA context) may be going down
            pass


class DeviceResult:
    """A C-contiguous tensor in memory mesc allocated for a result: ``ptr``, ``shape``,
    ``dtype``; ``result[j]`` is row ``j`` (a view). Exposes ``__dlpack__`` /
    ``__dlpack_device__``, and ``__cuda_array_interface__`` on CUDA; :meth:`numpy` copies it
    to the host."""

    __slots__ = ("ptr", "shape", "dtype", "device_type", "device_id", "stream", "_buffer", "__weakref__")

    def __init__(self, buffer, ptr: int, shape, dtype, device_type: int, device_id: int, stream):
        self._buffer, self.ptr = buffer, int(ptr)
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.device_type, self.device_id, self.stream = device_type, device_id, stream

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, j):
        if not isinstance(j, (int, np.integer)) or not -len(self) <= j < len(self):
            raise IndexError(f"a device result takes one row index in [0, {len(self)}), got {j!r}")
        j = int(j) % len(self)
        row = self.nbytes // max(len(self), 1)
        return DeviceResult(self._buffer, self.ptr + j * row, self.shape[1:], self.dtype, self.device_type,
                            self.device_id, self.stream)

    def __repr__(self):
        where = "cuda" if self.device_type == dlpack.CUDA else "cpu"
        return f"<mesc DeviceResult {self.dtype} {self.shape} on {where}:{self.device_id}>"

    def numpy(self) -> np.ndarray:
        """A host copy (waits for the stream)."""
        out = np.empty(self.shape, self.dtype)
        cuda.memcpy(out.ctypes.data, self.ptr, self.nbytes, cuda.DEVICE_TO_HOST, self.stream.ptr)
        self.stream.synchronize()
        return out

    # protocols -------------------------------------------------------------------------------
    @property
    def __cuda_array_interface__(self):
        if self.device_type != dlpack.CUDA:
            raise AttributeError("__cuda_array_interface__: the result is in CPU memory")
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "strides": None,
                "version": 3, "stream": self.stream.ptr or 1}

    def __dlpack_device__(self):
        return (self.device_type, self.device_id)

    def __dlpack__(self, stream=None, **_):
        if self.device_type == dlpack.CUDA and stream is not None and stream != -1 and int(stream) != self.stream.ptr:
            ev = cuda.Event()  # the consumer's stream waits for the copy into this result
            ev.record(self.stream.ptr)
            cuda.runtime().stream_wait_event(int(stream), ev.handle)
            ev.free()
        else:
            self.stream.synchronize()
        return _capsule(self)


def _capsule(res: DeviceResult):
    """A legacy ``dltensor`` PyCapsule over ``res``'s memory; its deleter lets go of ``res``."""
    shape = (ctypes.c_int64 * max(len(res.shape), 1))(*res.shape)
    managed = dlpack.DLManagedTensor()
    t = managed.dl_tensor
    t.data, t.byte_offset = res.ptr, 0
    t.device.device_type, t.device.device_id = res.device_type, res.device_id
    t.ndim, t.shape, t.strides = len(res.shape), shape, None
    t.dtype.code, t.dtype.bits, t.dtype.lanes = _CODES[res.dtype.kind], res.dtype.itemsize * 8, 1
    addr = ctypes.addressof(managed)

    def deleter(_ptr):
        _LIVE.pop(addr, None)

    managed.deleter = dlpack.Deleter(deleter)
    _LIVE[addr] = (res, managed, shape, managed.deleter)
    return dlpack.capsule_new(addr, b"dltensor", _CAPSULE_DESTRUCTOR)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _destroy_capsule(capsule) -> None:
    # a capsule dropped unused still owns the tensor: let it go (a consumed one was renamed)
    if dlpack.raw_capsule_valid(capsule, b"dltensor"):
        _LIVE.pop(dlpack.raw_capsule_pointer(capsule, b"dltensor"), None)


_CAPSULE_DESTRUCTOR = ctypes.cast(_destroy_capsule, ctypes.c_void_p)
