"""The one way mesc reaches the CUDA runtime: device queries, streams, events, device and pinned
host memory, copies. Every CUDA call in mesc (device checks, the TensorRT runner, the segment
clock, ``mesc bench``) goes through here; polygraphy is used only to wrap the TensorRT builder.

It needs only the CUDA runtime, never torch or polygraphy, so it works from the ``[gpu]`` or
``[trt]`` install alone. The runtime is reached, in this order, through cuda-python's
``cuda.bindings.runtime`` (cuda-python >= 12), its older ``cuda.cudart`` (gone in 13), or
libcudart through ctypes, looked up in LD_LIBRARY_PATH, the CUDA pip wheels (CUDA 12:
``nvidia/cuda_runtime/lib``, CUDA 13: ``nvidia/cu13/lib``), this Python's prefix (conda),
/usr/local/cuda and the system loader. Nothing is loaded before the first call (``import mesc``
stays light). Where none answers, :func:`runtime` raises a :class:`DeviceError` that says where
it looked: a silent ``None`` would let a plan for another GPU through the compute-capability check.

Both adapters offer the same calls. Queries return ``None`` where the runtime cannot answer
(callers word the error); operations raise :class:`DeviceError` naming the call and the CUDA
error. Streams and device pointers are plain ints (what TensorRT takes); events are opaque.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib
import os
import site
import sys

from mesc.runtime.errors import DeviceError

# cudaMemcpyKind (stable across CUDA 10..13)
HOST_TO_DEVICE, DEVICE_TO_HOST, DEVICE_TO_DEVICE = 1, 2, 3
# cudaStreamCaptureMode: thread-local, as trtexec --useCudaGraph captures (a CUDA call another
# thread makes meanwhile is not pulled into, nor refused by, this thread's capture)
CAPTURE_THREAD_LOCAL = 1


def _failed(call: str, err) -> DeviceError:
    return DeviceError(f"{call} failed (CUDA error {int(err)})")


class _BindingsRuntime:
    """cuda-python's runtime module: every call returns ``(cudaError_t, *values)``."""

    def __init__(self, module):
        self.rt = module
        self.source = module.__name__

    def _ok(self, err) -> bool:
        return err == self.rt.cudaError_t.cudaSuccess

    def _call(self, name: str, *args):
        out = getattr(self.rt, name)(*args)
        if not self._ok(out[0]):
            raise _failed(name, out[0])
        return out[1] if len(out) > 1 else None

    # queries
    def device_count(self) -> int | None:
        err, n = self.rt.cudaGetDeviceCount()
        return int(n) if self._ok(err) else None

    def device_count_error(self) -> str | None:
        """"CUDA error 35 (cudaErrorInsufficientDriver)" where cudaGetDeviceCount fails, else None."""
        err, _ = self.rt.cudaGetDeviceCount()
        return None if self._ok(err) else f"CUDA error {int(err)} ({getattr(err, 'name', 'unnamed')})"

    def attribute(self, attr: int, index: int) -> int | None:
        err, value = self.rt.cudaDeviceGetAttribute(self.rt.cudaDeviceAttr(attr), index)
        return int(value) if self._ok(err) else None

    def name(self, index: int) -> str | None:
        err, prop = self.rt.cudaGetDeviceProperties(index)
        if not self._ok(err):
            return None
        name = prop.name
        return (name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)) or None

    def set_device(self, index: int) -> bool:
        return self._ok(self.rt.cudaSetDevice(index)[0])

    def version(self, which: str) -> int | None:
        err, value = getattr(self.rt, f"cuda{which}GetVersion")()
        return int(value) if self._ok(err) and value else None

    # operations
    def stream_create(self) -> int:
        return int(self._call("cudaStreamCreate"))

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)

    def event_create(self):
        return self._call("cudaEventCreate")

    def event_record(self, event, stream: int) -> None:
        self._call("cudaEventRecord", event, stream)

    def event_synchronize(self, event) -> None:
        self._call("cudaEventSynchronize", event)

    def event_elapsed_ms(self, start, end) -> float:
        return float(self._call("cudaEventElapsedTime", start, end))

    def event_destroy(self, event) -> None:
        self._call("cudaEventDestroy", event)

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def malloc_host(self, nbytes: int) -> int:
        return int(self._call("cudaMallocHost", nbytes))

    def free_host(self, ptr: int) -> None:
        self._call("cudaFreeHost", ptr)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        self._call("cudaMemcpy", dst, src, nbytes, self.rt.cudaMemcpyKind(kind))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind(kind), stream)

    def stream_wait_event(self, stream: int, event) -> None:
        self._call("cudaStreamWaitEvent", stream, event, 0)

    # graphs: captured from a stream, instantiated, launched on it
    def begin_capture(self, stream: int) -> None:
        self._call("cudaStreamBeginCapture", stream, self.rt.cudaStreamCaptureMode(CAPTURE_THREAD_LOCAL))

    def end_capture(self, stream: int):
        return self._call("cudaStreamEndCapture", stream)

    def graph_instantiate(self, graph):
        # the *WithFlags form has one signature from CUDA 11.4 to 13 (cudaGraphInstantiate changed in 12)
        return self._call("cudaGraphInstantiateWithFlags", graph, 0)

    def graph_launch(self, graph_exec, stream: int) -> None:
        self._call("cudaGraphLaunch", graph_exec, stream)

    def graph_destroy(self, graph) -> None:
        self._call("cudaGraphDestroy", graph)

    def graph_exec_destroy(self, graph_exec) -> None:
        self._call("cudaGraphExecDestroy", graph_exec)

    def clear_error(self) -> None:
        self.rt.cudaGetLastError()


class _CtypesRuntime:
    """libcudart through ctypes: every call returns a cudaError_t (0: success)."""

    def __init__(self, lib, path: str):
        self.lib, self.source = lib, path

    def _call(self, name: str, *args) -> None:
        err = getattr(self.lib, name)(*args)
        if err != 0:
            raise _failed(name, err)

    # queries
    def device_count(self) -> int | None:
        n = ctypes.c_int(0)
        return n.value if self.lib.cudaGetDeviceCount(ctypes.byref(n)) == 0 else None

    def device_count_error(self) -> str | None:
        """"CUDA error 35 (cudaErrorInsufficientDriver: CUDA driver version is insufficient for
        CUDA runtime version)" where cudaGetDeviceCount fails, else None."""
        err = self.lib.cudaGetDeviceCount(ctypes.byref(ctypes.c_int(0)))
        if err == 0:
            return None
        words = []
        for fn in ("cudaGetErrorName", "cudaGetErrorString"):
            f = getattr(self.lib, fn, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                words.append((f(err) or b"").decode(errors="replace"))
        return f"CUDA error {err}" + (f" ({': '.join(w for w in words if w)})" if any(words) else "")

    def attribute(self, attr: int, index: int) -> int | None:
        value = ctypes.c_int(0)
        return value.value if self.lib.cudaDeviceGetAttribute(ctypes.byref(value), attr, index) == 0 else None

    def name(self, index: int) -> str | None:
        # cudaDeviceProp starts with `char name[256]`; the struct is ~1 KB and grows across CUDA
        # versions, so hand it a generous buffer and read only the name.
        buf = ctypes.create_string_buffer(16384)
        for fn in ("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"):
            f = getattr(self.lib, fn, None)
            if f is not None and f(buf, index) == 0:
                return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace") or None
        return None

    def set_device(self, index: int) -> bool:
        return self.lib.cudaSetDevice(index) == 0

    def version(self, which: str) -> int | None:
        value = ctypes.c_int(0)
        fn = getattr(self.lib, f"cuda{which}GetVersion", None)
        return value.value if fn is not None and fn(ctypes.byref(value)) == 0 and value.value else None

    # operations (handles and pointers travel as void*: ctypes' default int would cut them to 32 bits)
    def _new_handle(self, name: str, *args) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._call(name, ctypes.byref(handle), *args)
        return handle

    def stream_create(self) -> int:
        return int(self._new_handle("cudaStreamCreate").value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", ctypes.c_void_p(stream))

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", ctypes.c_void_p(stream))

    def event_create(self):
        return self._new_handle("cudaEventCreate")

    def event_record(self, event, stream: int) -> None:
        self._call("cudaEventRecord", event, ctypes.c_void_p(stream))

    def event_synchronize(self, event) -> None:
        self._call("cudaEventSynchronize", event)

    def event_elapsed_ms(self, start, end) -> float:
        ms = ctypes.c_float()
        self._call("cudaEventElapsedTime", ctypes.byref(ms), start, end)
        return float(ms.value)

    def event_destroy(self, event) -> None:
        self._call("cudaEventDestroy", event)

    def malloc(self, nbytes: int) -> int:
        return int(self._new_handle("cudaMalloc", ctypes.c_size_t(nbytes)).value or 0)

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ctypes.c_void_p(ptr))

    def malloc_host(self, nbytes: int) -> int:
        return int(self._new_handle("cudaMallocHost", ctypes.c_size_t(nbytes)).value or 0)

    def free_host(self, ptr: int) -> None:
        self._call("cudaFreeHost", ctypes.c_void_p(ptr))

    def memcpy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        self._call("cudaMemcpy", ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind)

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._call("cudaMemcpyAsync", ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind,
                   ctypes.c_void_p(stream))

    def stream_wait_event(self, stream: int, event) -> None:
        self._call("cudaStreamWaitEvent", ctypes.c_void_p(stream), event, ctypes.c_uint(0))

    def begin_capture(self, stream: int) -> None:
        self._call("cudaStreamBeginCapture", ctypes.c_void_p(stream), ctypes.c_int(CAPTURE_THREAD_LOCAL))

    def end_capture(self, stream: int):
        graph = ctypes.c_void_p()  # cudaStreamEndCapture(stream, cudaGraph_t*): the handle comes second
        self._call("cudaStreamEndCapture", ctypes.c_void_p(stream), ctypes.byref(graph))
        return graph

    def graph_instantiate(self, graph):
        # cudaGraphInstantiateWithFlags(exec*, graph, unsigned long long): one signature from
        # CUDA 11.4 to 13, where cudaGraphInstantiate's changed in 12
        exec_ = ctypes.c_void_p()
        self._call("cudaGraphInstantiateWithFlags", ctypes.byref(exec_), graph, ctypes.c_ulonglong(0))
        return exec_

    def graph_launch(self, graph_exec, stream: int) -> None:
        self._call("cudaGraphLaunch", graph_exec, ctypes.c_void_p(stream))

    def graph_destroy(self, graph) -> None:
        self._call("cudaGraphDestroy", graph)

    def graph_exec_destroy(self, graph_exec) -> None:
        self._call("cudaGraphExecDestroy", graph_exec)

    def clear_error(self) -> None:
        self.lib.cudaGetLastError()


# Finding the runtime ------------------------------------------------------------------------------

_BINDINGS = ("cuda.bindings.runtime", "cuda.cudart")
# CUDA 13 wheels put every library in nvidia/cu13/lib; CUDA 12 wheels one package per library
_WHEEL_DIRS = ("nvidia/cu13/lib", "nvidia/cuda_runtime/lib")
_SYSTEM_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib")
_SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


def _site_dirs() -> list[str]:
    dirs = list(sys.path)
    try:
        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # some embedded interpreters lack these
        pass
    return list(dict.fromkeys(d for d in dirs if d and os.path.isdir(d)))


def libcudart_candidates() -> list[str]:
    """Where libcudart is looked for, in order: paths of files found, then bare names for the
    system loader."""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += [os.path.join(sp, sub) for sp in _site_dirs() for sub in _WHEEL_DIRS]
    dirs += [os.path.join(sys.prefix, "lib"), *_SYSTEM_DIRS]
    found = [f for d in dict.fromkeys(dirs) for f in sorted(glob.glob(os.path.join(d, "libcudart.so*")), reverse=True)]
    loader = [n for n in (ctypes.util.find_library("cudart"), *_SONAMES) if n]
    return list(dict.fromkeys(found + loader))


def _load_runtime():
    tried = []
    for name in _BINDINGS:
        try:
            return _BindingsRuntime(importlib.import_module(name))
        except ImportError as err:
            tried.append(f"{name} ({err})")
    for path in libcudart_candidates():
        try:
            return _CtypesRuntime(ctypes.CDLL(path), path)
        except OSError as err:
            tried.append(f"{path} ({err})")
    raise DeviceError("no CUDA runtime found: install the NVIDIA driver and either cuda-python "
                      "(pip install 'mesc[gpu]') or the CUDA runtime (libcudart, e.g. pip install "
                      "nvidia-cuda-runtime-cu12), or put libcudart's directory on LD_LIBRARY_PATH. Tried: "
                      + "; ".join(tried))


_RUNTIME = None


def runtime():
    """The CUDA runtime this process uses (loaded once); :class:`DeviceError` where none is found."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = _load_runtime()
    return _RUNTIME


# Objects -----------------------------------------------------------------------------------------

class Stream:
    """A CUDA stream; ``ptr`` is its ``cudaStream_t`` as an int (what TensorRT's
    ``execute_async_v3`` takes)."""

    def __init__(self, ptr: int | None = None):
        """A new stream, or (``ptr``) a caller's stream, used but never destroyed here."""
        self._rt = runtime()
        self.owned = ptr is None
        self.ptr = self._rt.stream_create() if ptr is None else int(ptr)
        self._live = True

    def synchronize(self) -> None:
        self._rt.stream_synchronize(self.ptr)

    def wait(self, event: "Event") -> None:
        """Work queued here after this call waits for ``event`` (on the device, not the host)."""
        self._rt.stream_wait_event(self.ptr, event.handle)

    def free(self) -> None:
        if self._live:
            self._live = False
            if self.owned:
                self._rt.stream_destroy(self.ptr)


class Event:
    """A CUDA event, recorded on a stream; :meth:`ms_since` waits for it."""

    def __init__(self):
        self._rt = runtime()
        self.handle = self._rt.event_create()

    def record(self, stream_ptr: int) -> None:
        self._rt.event_record(self.handle, stream_ptr)

    def ms_since(self, start: "Event") -> float:
        """Device milliseconds from ``start``'s record to this one's (waits for this one)."""
        self._rt.event_synchronize(self.handle)
        return self._rt.event_elapsed_ms(start.handle, self.handle)

    def free(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self._rt.event_destroy(handle)


class DeviceBuffer:
    """``nbytes`` of device memory at ``ptr`` (at least one byte is allocated, so an empty
    tensor still has an address)."""

    __slots__ = ("ptr", "nbytes", "_rt")

    def __init__(self, nbytes: int):
        self._rt = runtime()
        self.nbytes = int(nbytes)
        self.ptr = self._rt.malloc(max(self.nbytes, 1))

    def free(self) -> None:
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self._rt.free(ptr)


class PinnedBuffer:
    """``nbytes`` of page-locked host memory at ``ptr``: copies from and to it can overlap
    with device work, where copies from pageable memory wait."""

    __slots__ = ("ptr", "nbytes", "_rt")

    def __init__(self, nbytes: int):
        self._rt = runtime()
        self.nbytes = int(nbytes)
        self.ptr = self._rt.malloc_host(max(self.nbytes, 1))

    def view(self, shape, dtype):
        """A numpy array over this memory (valid until :meth:`free`)."""
        import numpy as np

        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise DeviceError(f"a {dtype} array of shape {tuple(shape)} does not fit in {self.nbytes} pinned bytes")
        raw = (ctypes.c_char * max(self.nbytes, 1)).from_address(self.ptr)
        return np.frombuffer(raw, dtype, count).reshape(shape)

    def free(self) -> None:
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self._rt.free_host(ptr)


class GraphCaptureError(DeviceError):
    """The work could not be captured into a CUDA graph (it then runs uncaptured)."""


class Graph:
    """The work ``enqueue()`` queues on a stream, captured once into an executable CUDA graph
    (begin capture, enqueue, end capture, instantiate: what trtexec's ``--useCudaGraph`` does)
    and replayed by :meth:`launch` with the same device addresses."""

    def __init__(self, stream_ptr: int, enqueue):
        self._rt = runtime()
        self.exec = None
        rt, graph = self._rt, None
        rt.begin_capture(stream_ptr)
        try:
            enqueue()
        except Exception as err:
            _end_quietly(rt, stream_ptr)
            raise GraphCaptureError(f"the work failed while captured: {err}") from err
        try:
            graph = rt.end_capture(stream_ptr)
            self.exec = rt.graph_instantiate(graph)
        except DeviceError as err:
            clear = getattr(rt, "clear_error", None)
            if clear is not None:
                clear()
            raise GraphCaptureError(str(err)) from err
        finally:
            if graph is not None:
                rt.graph_destroy(graph)

    def launch(self, stream_ptr: int) -> None:
        self._rt.graph_launch(self.exec, stream_ptr)

    def free(self) -> None:
        if self.exec is not None:
            exec_, self.exec = self.exec, None
            self._rt.graph_exec_destroy(exec_)


def _end_quietly(rt, stream_ptr: int) -> None:
    # leave the stream out of capture mode whatever happened inside it, and clear the error an
    # invalidated capture leaves behind, so that the uncaptured run that follows starts clean
    try:
        graph = rt.end_capture(stream_ptr)
        if graph is not None:
            rt.graph_destroy(graph)
    except DeviceError:
        pass
    clear = getattr(rt, "clear_error", None)
    if clear is not None:
        clear()


def memcpy(dst: int, src: int, nbytes: int, kind: int, stream_ptr: int | None = None) -> None:
    """Copy ``nbytes`` from ``src`` to ``dst`` (ints: device pointers, or host addresses such as
    ``array.ctypes.data``); ``kind`` is :data:`HOST_TO_DEVICE`, :data:`DEVICE_TO_HOST` or
    :data:`DEVICE_TO_DEVICE`. With ``stream_ptr`` the copy is queued on that stream (host
    memory must then stay alive until the stream is synchronised); without, it is done on return."""
    if not nbytes:
        return
    if stream_ptr is None:
        runtime().memcpy(dst, src, nbytes, kind)
    else:
        runtime().memcpy_async(dst, src, nbytes, kind, stream_ptr)


def copy_rows(dst: int, src: int, rows, row_bytes: int, stream_ptr: int) -> int:
    """Gather batch rows ``rows`` (sorted indices) of the tensor at device address ``src``, rows
    ``row_bytes`` apart, into consecutive rows at ``dst``, queued on ``stream_ptr``: one
    device-to-device copy per run of consecutive rows. Returns the number of copies."""
    copies, start, n = 0, 0, len(rows)
    for end in range(1, n + 1):
        if end == n or int(rows[end]) != int(rows[end - 1]) + 1:
            memcpy(dst + start * row_bytes, src + int(rows[start]) * row_bytes, (end - start) * row_bytes,
                   DEVICE_TO_DEVICE, stream_ptr)
            copies += 1
            start = end
    return copies
