"""Input that already lives in the caller's memory: ``__dlpack__`` and ``__cuda_array_interface__``.

A CPU tensor (numpy, torch on the CPU, anything whose ``__dlpack_device__`` says CPU) is taken
as a numpy view of the same memory (``numpy.from_dlpack``): no copy. A CUDA tensor (torch, cupy,
...) becomes a :class:`DeviceArray`, a view of the caller's device memory that the runner
copies into its fixed input buffer device to device, on its own stream, without a host round
trip. The stream rule:

* ``__dlpack__``: mesc passes its stream as ``stream=`` and the producer orders its pending
  work before that stream, as the DLPack protocol has it;
* ``__cuda_array_interface__`` (version 3): mesc's stream waits for the ``stream`` the producer
  names (an event recorded there, ``cudaStreamWaitEvent``: the device waits, not the host).

A caller that hands its own stream to :func:`mesc.load` (``stream=``) shares it with mesc, and
no wait is needed. The caller's memory must stay untouched until the call returns.
"""

from __future__ import annotations

import ctypes

import numpy as np

from mesc.runtime import dlpack
from mesc.runtime.errors import InputError

class DeviceArray:
    """A C-contiguous tensor in CUDA memory the caller owns: ``ptr``, ``shape``, ``dtype``, the
    ``stream`` its producer wrote it on (None: ordered already), and what keeps it alive."""

    __slots__ = ("ptr", "shape", "dtype", "stream", "device_id", "_owner", "_release")

    def __init__(self, ptr: int, shape, dtype, stream=None, device_id: int = 0, owner=None, release=None):
        self.ptr, self.shape, self.dtype = int(ptr), tuple(int(d) for d in shape), np.dtype(dtype)
        self.stream, self.device_id, self._owner, self._release = stream, device_id, owner, release

    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def rows(self, start: int, stop: int) -> "DeviceArray":
        """Batch rows ``start:stop``, a view of the same memory."""
        row = self.nbytes // max(self.shape[0], 1)
        return DeviceArray(self.ptr + start * row, (stop - start, *self.shape[1:]), self.dtype, self.stream,
                           self.device_id, self)

    def release(self) -> None:
        """Hand the memory back to its producer (DLPack's deleter); the view is dead after."""
        if self._release is not None:
            release, self._release = self._release, None
            release()


def is_external(obj) -> bool:
    """Whether ``obj`` is a tensor handed over by protocol rather than a numpy array or a list."""
    return not isinstance(obj, (np.ndarray, list, tuple)) and (
        hasattr(obj, "__cuda_array_interface__") or hasattr(obj, "__dlpack__"))


def take_external(obj, stream_ptr):
    """``obj`` as a numpy view (CPU memory) or a :class:`DeviceArray` (CUDA memory), without a
    copy; ``stream_ptr`` is the stream mesc will read it on (None where it has none)."""
    if hasattr(obj, "__cuda_array_interface__"):
        return _from_cuda_array_interface(obj)
    device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (dlpack.CPU, 0)
    if int(device[0]) in (dlpack.CPU, dlpack.CUDA_HOST):
        try:
            return np.from_dlpack(obj)
        except (TypeError, RuntimeError, BufferError, AttributeError) as err:
            raise InputError(f"cannot read the {type(obj).__name__} through DLPack: {err}") from None
    if int(device[0]) != dlpack.CUDA:
        raise InputError(f"the {type(obj).__name__} is on DLPack device type {device[0]}; mesc reads CPU and "
                         f"CUDA memory")
    if stream_ptr is None:
        raise InputError("a CUDA tensor as input needs a runner on a CUDA stream (TensorRT, or onnxruntime >= 1.17 "
                         "with CUDA); copy it to the host first (e.g. t.cpu().numpy())")
    # DLPack: the consumer names its stream (1: the legacy default stream, as 0 is not allowed)
    capsule = obj.__dlpack__(stream=int(stream_ptr) or 1)
    return from_dlpack_capsule(capsule, obj)


def from_dlpack_capsule(capsule, owner=None) -> DeviceArray:
    """The tensor a (legacy, unversioned) DLPack capsule holds, as a :class:`DeviceArray` (CPU
    capsules are read the same way, which is how this is tested without a GPU). The capsule is
    marked used; its deleter runs on :meth:`DeviceArray.release`."""
    try:
        addr = dlpack.capsule_pointer(capsule, b"dltensor")
    except ValueError:
        raise InputError("the DLPack capsule was used already, or is a versioned one mesc does not read") from None
    managed = dlpack.DLManagedTensor.from_address(addr)
    t = managed.dl_tensor
    shape = tuple(t.shape[i] for i in range(t.ndim))
    dtype = _dl_dtype(t.dtype)
    if t.strides:
        strides = tuple(t.strides[i] for i in range(t.ndim))
        want = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(t.ndim))
        if any(s != w for s, w, n in zip(strides, want, shape) if n > 1):
            raise InputError(f"the tensor is not contiguous (strides {strides} for shape {shape}); "
                             f"pass a contiguous one (e.g. t.contiguous())")
    ptr = (t.data or 0) + t.byte_offset
    dlpack.capsule_rename(capsule, b"used_dltensor")

    def release():
        if managed.deleter:
            managed.deleter(addr)

    if t.device.device_type not in (dlpack.CUDA, dlpack.CPU):
        release()
        raise InputError(f"DLPack device type {t.device.device_type} is not CUDA memory")
    return DeviceArray(ptr, shape, dtype, None, t.device.device_id, owner, release)


def _dl_dtype(dt) -> np.dtype:
    if dt.lanes != 1:
        raise InputError(f"vector element types (lanes {dt.lanes}) are not supported")
    kind = {dlpack.FLOAT: "f", dlpack.INT: "i", dlpack.UINT: "u"}.get(dt.code)
    if kind is None:
        raise InputError(f"DLPack element type code {dt.code} is not supported")
    return np.dtype(f"{kind}{dt.bits // 8}")


def _from_cuda_array_interface(obj) -> DeviceArray:
    cai = obj.__cuda_array_interface__
    shape = tuple(cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None:
        want = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) * dtype.itemsize for i in range(len(shape)))
        if any(s != w for s, w, n in zip(strides, want, shape) if n > 1):
            raise InputError(f"the tensor is not C-contiguous (strides {tuple(strides)} for shape {shape}); "
                             f"pass a contiguous one")
    if cai.get("mask") is not None:
        raise InputError("masked arrays are not supported")
    # version 3: "stream" is the producer's stream (None: no ordering needed; 1 and 2 the default streams)
    return DeviceArray(cai["data"][0], shape, dtype, cai.get("stream"), owner=obj)
