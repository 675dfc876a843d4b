"""Device names ("cpu", "cuda", "cuda:1") and the few CUDA facts every backend checks.

The CUDA queries go through the CUDA runtime library that polygraphy already locates
(``polygraphy.cuda.wrapper().handle`` is a ctypes handle to libcudart), so no torch and no
extra binding is needed; where polygraphy or libcudart is missing they return ``None`` and
the backend's own error decides.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass

from mesc.runtime.errors import DeviceError

# cudaDeviceAttr values (stable across CUDA 10..12)
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


def _cudart():
    try:
        from polygraphy import cuda

        return cuda.wrapper().handle
    except Exception:  # polygraphy or libcudart absent: nothing to ask
        return None


def cuda_device_count() -> int | None:
    lib = _cudart()
    if lib is None:
        return None
    n = ctypes.c_int(0)
    if lib.cudaGetDeviceCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def check_cuda_device(dev: Device) -> None:
    """Refuse a CUDA index that does not exist (when the CUDA runtime can tell)."""
    n = cuda_device_count()
    if n is not None and dev.index >= n:
        have = "no CUDA device" if n == 0 else f"{n} CUDA device(s): " + ", ".join(f"cuda:{i}" for i in range(n))
        raise DeviceError(f"device {dev} does not exist; this machine has {have}")


def compute_capability(index: int) -> str | None:
    lib = _cudart()
    if lib is None:
        return None
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    if lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, index) != 0:
        return None
    if lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, index) != 0:
        return None
    return f"{major.value}.{minor.value}"


def device_name(index: int) -> str | None:
    lib = _cudart()
    if lib is None:
        return None
    # cudaDeviceProp starts with `char name[256]`; the struct is ~1 KB and grows across CUDA
    # versions, so hand it a generous buffer and read only the name.
    buf = ctypes.create_string_buffer(16384)
    for fn in ("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"):
        f = getattr(lib, fn, None)
        if f is not None and f(buf, index) == 0:
            return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
    return None


def set_cuda_device(index: int) -> None:
    lib = _cudart()
    if lib is not None and lib.cudaSetDevice(index) != 0:
        raise DeviceError(f"cannot select device cuda:{index}")


def device_info(index: int = 0) -> dict:
    """Name and compute capability of a CUDA device (None where unknown); nvidia-smi answers
    where libcudart cannot be found."""
    name, cc = device_name(index), compute_capability(index)
    if (name is None or cc is None) and shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i",
                              str(index)], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and "," in out.stdout:
            smi_name, smi_cc = (x.strip() for x in out.stdout.strip().split(",", 1))
            name, cc = name or smi_name, cc or smi_cc
    return {"name": name, "compute_capability": cc}
