"""The one CUDA access path without a GPU: where the CUDA runtime is looked for and in which
order, the cuda-python and ctypes adapters' calls, and the stream/event/memory objects, all
against stand-ins that record what they are asked."""

import ctypes
import enum
import os
from types import SimpleNamespace

import numpy as np
import pytest

from cuda_fakes import HostMemoryRuntime
from mesc.runtime import cuda
from mesc.runtime.errors import DeviceError


@pytest.fixture
def no_runtime_yet(monkeypatch):
    monkeypatch.setattr(cuda, "_RUNTIME", None)


def _no_bindings(monkeypatch, tried=None):
    def import_module(name):
        if tried is not None:
            tried.append(name)
        raise ImportError(f"No module named '{name}'")

    monkeypatch.setattr(cuda.importlib, "import_module", import_module)


def test_cuda_python_is_asked_first_then_its_old_module(monkeypatch, no_runtime_yet):
    tried = []
    _no_bindings(monkeypatch, tried)
    monkeypatch.setattr(cuda, "libcudart_candidates", lambda: [])
    with pytest.raises(DeviceError):
        cuda.runtime()
    assert tried == ["cuda.bindings.runtime", "cuda.cudart"]


def test_libcudart_search_order(monkeypatch, tmp_path):
    ld, site_pkgs = tmp_path / "ld", tmp_path / "site"
    cu13, cu12 = site_pkgs / "nvidia" / "cu13" / "lib", site_pkgs / "nvidia" / "cuda_runtime" / "lib"
    for d, name in ((ld, "libcudart.so.12"), (cu13, "libcudart.so.13"), (cu12, "libcudart.so.12")):
        d.mkdir(parents=True)
        (d / name).write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{ld}{os.pathsep}{tmp_path / 'missing'}")
    monkeypatch.setattr(cuda.sys, "path", [str(site_pkgs)])
    monkeypatch.setattr(cuda, "_site_dirs", lambda: [str(site_pkgs)])
    monkeypatch.setattr(cuda.ctypes.util, "find_library", lambda name: None)
    found = cuda.libcudart_candidates()
    assert found[:3] == [str(ld / "libcudart.so.12"), str(cu13 / "libcudart.so.13"), str(cu12 / "libcudart.so.12")]
    # then the system loader's names, last
    assert found[-4:] == ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]


def test_first_loadable_libcudart_is_used(monkeypatch, no_runtime_yet):
    _no_bindings(monkeypatch)
    monkeypatch.setattr(cuda, "libcudart_candidates", lambda: ["/a/libcudart.so.12", "libcudart.so"])
    opened = []

    def cdll(path):
        opened.append(path)
        if path.startswith("/a/"):
            raise OSError("wrong ELF class")
        return SimpleNamespace(cudaGetDeviceCount=lambda p: 0)

    monkeypatch.setattr(cuda.ctypes, "CDLL", cdll)
    assert cuda.runtime().source == "libcudart.so" and opened == ["/a/libcudart.so.12", "libcudart.so"]




class _CtypesLib:
    """libcudart's C calls as ctypes makes them: out-parameters by reference, handles as void*."""

    HIGH = 0x7F00_0000_1000  # above 32 bits: a pointer cut to ctypes' default int would show

    def __init__(self):
        self.calls = []

    def _out(self, name, ref, *args):
        ref._obj.value = self.HIGH
        self.calls.append((name, *args))
        return 0

    def cudaStreamCreate(self, ref):
        return self._out("cudaStreamCreate", ref)

    def cudaMalloc(self, ref, size):
        return self._out("cudaMalloc", ref, size)

    def cudaMemcpyAsync(self, dst, src, size, kind, stream):
        self.calls.append(("cudaMemcpyAsync", dst, src, size, kind, stream))
        return 0

    def cudaFree(self, ptr):
        return 2  # cudaErrorMemoryAllocation: any failure


def test_ctypes_adapter_passes_pointers_whole_and_names_failures():
    lib = _CtypesLib()
    rt = cuda._CtypesRuntime(lib, "libcudart.so.12")
    assert rt.stream_create() == lib.HIGH
    assert rt.malloc(64) == lib.HIGH and lib.calls[-1][1].value == 64
    rt.memcpy_async(lib.HIGH, 1, 16, cuda.DEVICE_TO_HOST, lib.HIGH)
    _, dst, src, size, kind, stream = lib.calls[-1]
    assert isinstance(dst, ctypes.c_void_p) and dst.value == lib.HIGH and stream.value == lib.HIGH
    assert size.value == 16 and kind == 2
    with pytest.raises(DeviceError, match=r"cudaFree failed \(CUDA error 2\)"):
        rt.free(lib.HIGH)


class _Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class _Kind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


def test_bindings_adapter_unwraps_results_and_names_failures():
    calls = []

    def record(name, result):
        def call(*args):
            calls.append((name, *args))
            return result
        return call

    module = SimpleNamespace(
        __name__="cuda.bindings.runtime", cudaError_t=_Err, cudaMemcpyKind=_Kind,
        cudaStreamCreate=record("cudaStreamCreate", (_Err.cudaSuccess, 0x55)),
        cudaEventElapsedTime=record("cudaEventElapsedTime", (_Err.cudaSuccess, 2.5)),
        cudaMemcpy=record("cudaMemcpy", (_Err.cudaSuccess,)),
        cudaMallocHost=record("cudaMallocHost", (_Err.cudaErrorInvalidValue, 0)))
    rt = cuda._BindingsRuntime(module)
    assert rt.stream_create() == 0x55
    assert rt.event_elapsed_ms("a", "b") == 2.5
    rt.memcpy(1, 2, 8, cuda.HOST_TO_DEVICE)
    assert calls[-1] == ("cudaMemcpy", 1, 2, 8, _Kind.cudaMemcpyHostToDevice)
    with pytest.raises(DeviceError, match=r"cudaMallocHost failed \(CUDA error 1\)"):
        rt.malloc_host(8)


def test_buffers_and_copies_round_trip(monkeypatch):
    rt = HostMemoryRuntime()
    monkeypatch.setattr(cuda, "_RUNTIME", rt)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    dev, pinned = cuda.DeviceBuffer(x.nbytes), cuda.PinnedBuffer(x.nbytes)
    cuda.memcpy(dev.ptr, x.ctypes.data, x.nbytes, cuda.HOST_TO_DEVICE, stream_ptr=4)
    out = pinned.view((2, 3), np.float32)
    cuda.memcpy(out.ctypes.data, dev.ptr, x.nbytes, cuda.DEVICE_TO_HOST)
    np.testing.assert_array_equal(out, x)
    assert rt.calls == [("memcpy_async", 1, 4), ("memcpy", 2)]
    cuda.memcpy(dev.ptr, x.ctypes.data, 0, cuda.HOST_TO_DEVICE)  # nothing to copy: no call
    assert len(rt.calls) == 2
    with pytest.raises(DeviceError, match="does not fit"):
        pinned.view((3, 3), np.float32)
    dev.free()
    dev.free()  # once only
    pinned.free()
    assert [c[0] for c in rt.calls[2:]] == ["free", "free"] and rt.blocks == {}
    assert cuda.DeviceBuffer(0).nbytes == 0  # an empty tensor still gets an address


def test_cuda_python_is_loaded_on_the_first_cuda_call_only(tmp_path):
    """`import mesc`, the runtime, the clock and the bench harness leave cuda-python (and
    polygraphy) alone; here a stand-in `cuda` package that exits 3 when imported tells."""
    import subprocess
    import sys

    (tmp_path / "cuda").mkdir()
    (tmp_path / "cuda" / "__init__.py").write_text("raise SystemExit(3)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    light = ("import sys, mesc, mesc.runtime, mesc.runtime.cuda, mesc.runtime.clock, mesc.benchmarks.harness; "
             "from mesc.runtime.devices import parse_device; parse_device('cuda:0'); "
             "sys.exit(4 if 'polygraphy' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", light], env=env).returncode == 0
    first_call = "from mesc.runtime import cuda; cuda.runtime()"
    assert subprocess.run([sys.executable, "-c", first_call], env=env).returncode == 3


class _GraphLib(_CtypesLib):
    """The graph calls of libcudart, as ctypes makes them; capture of a failing enqueue ends anyway."""

    def cudaStreamBeginCapture(self, stream, mode):
        self.calls.append(("begin", stream.value, mode.value))
        return 0

    def cudaStreamEndCapture(self, stream, ref):  # the graph comes back in the second argument
        ref._obj.value = self.HIGH + 1
        self.calls.append(("end", stream.value))
        return 0

    def cudaGraphInstantiateWithFlags(self, ref, graph, flags):
        ref._obj.value = self.HIGH + 2
        self.calls.append(("instantiate", graph.value, flags.value))
        return 0

    def cudaGraphLaunch(self, exec_, stream):
        self.calls.append(("launch", exec_.value, stream.value))
        return 0

    def cudaGraphDestroy(self, graph):
        self.calls.append(("destroy graph", graph.value))
        return 0

    def cudaGraphExecDestroy(self, exec_):
        self.calls.append(("destroy exec", exec_.value))
        return 0

    def cudaGetLastError(self):
        self.calls.append(("clear",))
        return 0


def test_graph_capture_through_ctypes_as_trtexec_does(monkeypatch):
    """Begin (thread-local mode), enqueue, end, instantiate, drop the graph, keep the executable;
    a failed enqueue still ends the capture and clears the error, and says why."""
    lib = _GraphLib()
    monkeypatch.setattr(cuda, "_RUNTIME", cuda._CtypesRuntime(lib, "libcudart.so.12"))
    queued = []
    g = cuda.Graph(lib.HIGH, lambda: queued.append("enqueue"))
    assert queued == ["enqueue"]
    assert lib.calls == [("begin", lib.HIGH, cuda.CAPTURE_THREAD_LOCAL), ("end", lib.HIGH),
                         ("instantiate", lib.HIGH + 1, 0), ("destroy graph", lib.HIGH + 1)]
    g.launch(lib.HIGH)
    g.free()
    g.free()  # once only
    assert lib.calls[-2:] == [("launch", lib.HIGH + 2, lib.HIGH), ("destroy exec", lib.HIGH + 2)]
    lib.calls.clear()

    def fails():
        raise RuntimeError("enqueueV3 refused")

    with pytest.raises(cuda.GraphCaptureError, match="enqueueV3 refused"):
        cuda.Graph(lib.HIGH, fails)
    assert [c[0] for c in lib.calls] == ["begin", "end", "destroy graph", "clear"]
