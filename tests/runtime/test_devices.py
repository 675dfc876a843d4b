"""CUDA device queries without a GPU, through the one CUDA access path (:mod:`mesc.runtime.cuda`)
answered by stand-ins: the cuda-python adapter, and the error where no runtime is found."""

import enum
import re
from types import SimpleNamespace

import pytest

from mesc.runtime import cuda, devices
from mesc.runtime.devices import Device, DeviceError


@pytest.fixture
def no_runtime_yet(monkeypatch):
    monkeypatch.setattr(cuda, "_RUNTIME", None)


def _no_bindings(monkeypatch):
    def import_module(name):
        raise ImportError(f"No module named '{name}'")

    monkeypatch.setattr(cuda.importlib, "import_module", import_module)


def test_missing_cuda_runtime_is_a_clear_device_error(monkeypatch, no_runtime_yet):
    _no_bindings(monkeypatch)
    monkeypatch.setattr(cuda, "libcudart_candidates", lambda: ["libcudart.so"])

    def cdll(path):
        raise OSError(f"{path}: cannot open shared object file")

    monkeypatch.setattr(cuda.ctypes, "CDLL", cdll)
    for query in (devices.cuda_device_count, lambda: devices.compute_capability(0),
                  lambda: devices.check_cuda_device(Device("cuda", 0)), lambda: devices.device_info(0)):
        with pytest.raises(DeviceError, match=r"no CUDA runtime found.*mesc\[gpu\].*Tried: cuda.bindings.runtime"):
            query()


class _Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevice = 101


class _Attr(enum.IntEnum):
    cudaDevAttrComputeCapabilityMajor = 75
    cudaDevAttrComputeCapabilityMinor = 76


def _fake_bindings(count=1, cc=(8, 7), name=b"Orin\0\0"):
    """The shape of cuda-python's runtime module: every call returns (cudaError_t, *values)."""
    def attribute(attr, index):
        if index >= count:
            return _Err.cudaErrorInvalidDevice, 0
        return _Err.cudaSuccess, cc[0] if attr == _Attr.cudaDevAttrComputeCapabilityMajor else cc[1]

    return SimpleNamespace(
        __name__="cuda.bindings.runtime", cudaError_t=_Err, cudaDeviceAttr=_Attr,
        cudaGetDeviceCount=lambda: (_Err.cudaSuccess, count), cudaDeviceGetAttribute=attribute,
        cudaGetDeviceProperties=lambda i: (_Err.cudaSuccess, SimpleNamespace(name=name)),
        cudaSetDevice=lambda i: (_Err.cudaSuccess if i < count else _Err.cudaErrorInvalidDevice,),
        cudaDriverGetVersion=lambda: (_Err.cudaSuccess, 13000), cudaRuntimeGetVersion=lambda: (_Err.cudaSuccess, 12060))


def test_queries_through_cuda_python(monkeypatch, no_runtime_yet):
    fake = _fake_bindings()
    monkeypatch.setattr(cuda.importlib, "import_module", lambda name: fake)
    assert devices.cuda_device_count() == 1
    assert devices.device_info(0) == {"name": "Orin", "compute_capability": "8.7"}
    devices.set_cuda_device(0)
    with pytest.raises(DeviceError, match="cannot select device cuda:1"):
        devices.set_cuda_device(1)
    with pytest.raises(DeviceError, match=r"cuda:1 does not exist; this machine has 1 CUDA device\(s\): cuda:0"):
        devices.check_cuda_device(Device("cuda", 1))
    with pytest.raises(DeviceError, match="cannot read the compute capability of cuda:3"):
        devices.compute_capability(3)
    # without polygraphy too: reports name the driver's and the runtime's CUDA versions
    assert devices.cuda_versions() == {"cuda_driver": "13.0", "cuda_runtime": "12.6"}


def test_no_driver_is_named_by_the_runtimes_own_error(monkeypatch, no_runtime_yet):
    """A machine with the CUDA runtime and no driver (what PyPI's TensorRT 8.5 wheels give on a
    machine without a GPU): every refusal names cudaGetDeviceCount's error, not a guess."""
    fake = _fake_bindings()
    fake.cudaGetDeviceCount = lambda: (_Err.cudaErrorInsufficientDriver, 0)
    fake.cudaDeviceGetAttribute = lambda attr, index: (_Err.cudaErrorInsufficientDriver, 0)
    monkeypatch.setattr(cuda.importlib, "import_module", lambda name: fake)
    why = "cudaGetDeviceCount failed with CUDA error 35 (cudaErrorInsufficientDriver) in cuda.bindings.runtime"
    assert devices.cuda_failure() == why
    with pytest.raises(DeviceError, match=re.escape("cuda:0 does not exist; this machine has no CUDA device: " + why)):
        devices.check_cuda_device(Device("cuda", 0))
    with pytest.raises(DeviceError, match=re.escape("cannot read the compute capability of cuda:0: " + why)):
        devices.compute_capability(0)


def test_a_device_that_answers_is_no_failure(monkeypatch, no_runtime_yet):
    monkeypatch.setattr(cuda.importlib, "import_module", lambda name: _fake_bindings())
    assert devices.cuda_failure() is None


def test_cuda_versions_empty_without_a_runtime(monkeypatch, no_runtime_yet):
    monkeypatch.setattr(cuda, "libcudart_candidates", lambda: [])
    assert devices.cuda_versions() == {}


def test_name_falls_back_to_nvidia_smi_only_for_the_name(monkeypatch, no_runtime_yet):
    fake = _fake_bindings(name=b"")
    monkeypatch.setattr(cuda.importlib, "import_module", lambda name: fake)
    monkeypatch.setattr(devices.shutil, "which", lambda cmd: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(devices.subprocess, "run",
                        lambda *a, **k: SimpleNamespace(returncode=0, stdout="NVIDIA GeForce GTX 1080 Ti\n"))
    assert devices.device_info(0) == {"name": "NVIDIA GeForce GTX 1080 Ti", "compute_capability": "8.7"}
