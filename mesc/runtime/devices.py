"""Device names ("cpu", "cuda", "cuda:1") and the few CUDA facts every backend checks.

The CUDA queries need only the CUDA runtime, never torch or polygraphy, so they work from the
``[gpu]`` install alone. The runtime is reached, in this order, through cuda-python's
``cuda.bindings.runtime`` (cuda-python >= 12), its older ``cuda.cudart`` (gone in 13), or
libcudart through ctypes, looked up in LD_LIBRARY_PATH, the CUDA pip wheels (CUDA 12:
``nvidia/cuda_runtime/lib``, CUDA 13: ``nvidia/cu13/lib``), this Python's prefix (conda),
/usr/local/cuda and the system loader. Where none answers, every query raises a
:class:`DeviceError` that says where it looked: a silent ``None`` would let a plan for another
GPU through the compute-capability check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass

from mesc.runtime.errors import DeviceError

# cudaDeviceAttr values (stable across CUDA 10..13)
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    index: int = 0

    def __str__(self):
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def parse_device(device) -> Device:
    if isinstance(device, Device):
        return device
    text = str(device).strip().lower()
    if text == "cpu":
        return Device("cpu")
    if text in ("cuda", "gpu"):
        return Device("cuda", 0)
    kind, _, idx = text.partition(":")
    if kind in ("cuda", "gpu") and idx.isdigit():
        return Device("cuda", int(idx))
    raise DeviceError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


# The CUDA runtime, three ways -------------------------------------------------------------------

class _BindingsRuntime:
    """cuda-python's runtime module: every call returns ``(cudaError_t, *values)``."""

    def __init__(self, module):
        self.rt = module
        self.source = module.__name__

    def _ok(self, err) -> bool:
        return err == self.rt.cudaError_t.cudaSuccess

    def device_count(self) -> int | None:
        err, n = self.rt.cudaGetDeviceCount()
        return int(n) if self._ok(err) else None

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


class _CtypesRuntime:
    """libcudart through ctypes: every call returns a cudaError_t (0: success)."""

    def __init__(self, lib, path: str):
        self.lib, self.source = lib, path

    def device_count(self) -> int | None:
        n = ctypes.c_int(0)
        return n.value if self.lib.cudaGetDeviceCount(ctypes.byref(n)) == 0 else None

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


def cuda_runtime():
    """The CUDA runtime this process queries (loaded once); :class:`DeviceError` where none is found."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = _load_runtime()
    return _RUNTIME


# Queries ---------------------------------------------------------------------------------------

def cuda_device_count() -> int:
    """CUDA devices this process sees (0 where the driver reports none or fails)."""
    return cuda_runtime().device_count() or 0


def visible_cuda_devices() -> int:
    """CUDA devices that answer, 0 where there is no CUDA runtime at all: for choosing defaults
    and writing reports, where no GPU is an answer rather than an error."""
    try:
        return cuda_device_count()
    except DeviceError:
        return 0


def check_cuda_device(dev: Device) -> None:
    """Refuse a CUDA index that does not exist."""
    n = cuda_device_count()
    if dev.index >= n:
        have = "no CUDA device" if n == 0 else f"{n} CUDA device(s): " + ", ".join(f"cuda:{i}" for i in range(n))
        raise DeviceError(f"device {dev} does not exist; this machine has {have}")


def compute_capability(index: int) -> str:
    """'8.7' for an Orin; :class:`DeviceError` where the runtime cannot tell."""
    rt = cuda_runtime()
    major, minor = rt.attribute(_ATTR_CC_MAJOR, index), rt.attribute(_ATTR_CC_MINOR, index)
    if major is None or minor is None:
        raise DeviceError(f"the CUDA runtime ({rt.source}) cannot read the compute capability of cuda:{index}; "
                          f"is the device there and the driver loaded?")
    return f"{major}.{minor}"


def cuda_versions() -> dict:
    """``{"cuda_driver": "13.0", "cuda_runtime": "13.0"}``, each where the runtime tells it
    (the driver's is the newest CUDA it supports); empty where there is no CUDA runtime."""
    try:
        rt = cuda_runtime()
    except DeviceError:
        return {}
    out = {}
    for key, which in (("cuda_driver", "Driver"), ("cuda_runtime", "Runtime")):
        v = rt.version(which)
        if v:
            out[key] = f"{v // 1000}.{(v % 1000) // 10}"
    return out


def device_name(index: int) -> str | None:
    return cuda_runtime().name(index)


def set_cuda_device(index: int) -> None:
    if not cuda_runtime().set_device(index):
        raise DeviceError(f"cannot select device cuda:{index}")


def _smi_name(index: int) -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(index)],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def device_info(index: int = 0) -> dict:
    """Name and compute capability of a CUDA device; the compute capability comes from the CUDA
    runtime or not at all (:class:`DeviceError`), the name from nvidia-smi where the runtime
    has none (Jetsons have no nvidia-smi)."""
    cc = compute_capability(index)
    return {"name": device_name(index) or _smi_name(index), "compute_capability": cc}
