"""Device names ("cpu", "cuda", "cuda:1") and the few CUDA facts every backend checks.

The queries go through :mod:`mesc.runtime.cuda` (cuda-python or libcudart, never torch or
polygraphy), so they work from the ``[gpu]`` install alone. Where no CUDA runtime answers,
every query raises the :class:`DeviceError` of :func:`mesc.runtime.cuda.runtime`, which says
where it looked.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from mesc.runtime import cuda
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


# Queries ---------------------------------------------------------------------------------------

def cuda_device_count() -> int:
    """CUDA devices this process sees (0 where the driver reports none or fails)."""
    return cuda.runtime().device_count() or 0


def visible_cuda_devices() -> int:
    """CUDA devices that answer, 0 where there is no CUDA runtime at all: for choosing defaults
    and writing reports, where no GPU is an answer rather than an error."""
    try:
        return cuda_device_count()
    except DeviceError:
        return 0


def cuda_failure() -> str | None:
    """Why no CUDA device answers, in the CUDA runtime's words ("cudaGetDeviceCount failed with
    CUDA error 35 (cudaErrorInsufficientDriver: CUDA driver version is insufficient ...)": no
    driver, or one too old), or None where one does. TensorRT's own "CUDA initialization
    failure with error: 35" is the same error."""
    try:
        rt = cuda.runtime()
    except DeviceError as err:
        return str(err)
    error = rt.device_count_error()
    if error is None:
        return None if rt.device_count() else f"the CUDA runtime ({rt.source}) reports no CUDA device"
    return f"cudaGetDeviceCount failed with {error} in {rt.source}"


def check_cuda_device(dev: Device) -> None:
    """Refuse a CUDA index that does not exist."""
    n = cuda_device_count()
    if dev.index >= n:
        have = (f"no CUDA device: {cuda_failure()}" if n == 0 else
                f"{n} CUDA device(s): " + ", ".join(f"cuda:{i}" for i in range(n)))
        raise DeviceError(f"device {dev} does not exist; this machine has {have}")


def compute_capability(index: int) -> str:
    """'8.7' for an Orin; :class:`DeviceError` where the runtime cannot tell."""
    rt = cuda.runtime()
    major, minor = rt.attribute(_ATTR_CC_MAJOR, index), rt.attribute(_ATTR_CC_MINOR, index)
    if major is None or minor is None:
        why = cuda_failure()
        raise DeviceError(f"cannot read the compute capability of cuda:{index}: "
                          + (why or f"the CUDA runtime ({rt.source}) does not answer; is the driver loaded?"))
    return f"{major}.{minor}"


def cuda_versions() -> dict:
    """``{"cuda_driver": "13.0", "cuda_runtime": "13.0"}``, each where the runtime tells it
    (the driver's is the newest CUDA it supports); empty where there is no CUDA runtime."""
    try:
        rt = cuda.runtime()
    except DeviceError:
        return {}
    out = {}
    for key, which in (("cuda_driver", "Driver"), ("cuda_runtime", "Runtime")):
        v = rt.version(which)
        if v:
            out[key] = f"{v // 1000}.{(v % 1000) // 10}"
    return out


def device_name(index: int) -> str | None:
    return cuda.runtime().name(index)


def set_cuda_device(index: int) -> None:
    if not cuda.runtime().set_device(index):
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
