"""What a self-test report says about the machine: GPU, driver, CUDA and the inference libraries.

Versions come from package metadata (no import), except ONNX Runtime, whose providers need the
module, and TensorRT where its package carries no metadata (JetPack installs it from a .deb).
Torch is never imported here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

ABSENT = "absent"

# distribution names per library; the first one installed answers
_DISTS = {
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),
    "polygraphy": ("polygraphy",),
    "cuda_python": ("cuda-python", "cuda-bindings"),
    "torch": ("torch",),
    "numpy": ("numpy",),
}


def dist_version(names) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _tensorrt_version() -> str:
    version = dist_version(_DISTS["tensorrt"])
    if version is None and importlib.util.find_spec("tensorrt") is not None:
        import tensorrt

        version = getattr(tensorrt, "__version__", "installed, version unknown")
    return version or ABSENT


def _onnxruntime() -> tuple[str, list]:
    if importlib.util.find_spec("onnxruntime") is None:
        return ABSENT, []
    import onnxruntime

    return onnxruntime.__version__, list(onnxruntime.get_available_providers())


def environment(device) -> dict:
    """The machine as the self-test saw it; every fact that could not be found reads 'absent'.

    GPU facts are asked of the CUDA device the test runs on, or of cuda:0 when it runs on the CPU
    (a report from a GPU machine should say so whichever backend was tested).
    """
    from mesc import __version__
    from mesc.benchmarks.harness import cpu_model, environment as bench_environment
    from mesc.runtime import devices

    index = device.index if device.is_cuda else 0
    if devices.visible_cuda_devices() > index:
        cuda = bench_environment(devices.Device("cuda", index))  # driver and runtime versions
        gpu = devices.device_info(index)
    else:  # no GPU here: an answer for the report, not an error
        cuda, gpu = bench_environment(devices.Device("cpu")), {"name": None, "compute_capability": None}
    ort_version, providers = _onnxruntime()
    env = {
        "gpu": gpu["name"], "compute_capability": gpu["compute_capability"],
        "driver": cuda.get("cuda_driver"), "cuda": cuda.get("cuda_runtime"),
        "tensorrt": _tensorrt_version(), "onnxruntime": ort_version, "onnxruntime_providers": providers,
        "polygraphy": dist_version(_DISTS["polygraphy"]), "cuda_python": dist_version(_DISTS["cuda_python"]),
        "torch": dist_version(_DISTS["torch"]), "numpy": dist_version(_DISTS["numpy"]), "mesc": __version__,
        "python": cuda["python"], "os": cuda["os"], "cpu": cpu_model(), "cpu_cores": cuda["cpu_cores"],
    }
    return {k: ABSENT if v is None else v for k, v in env.items()}


def format_environment(env: dict) -> list[str]:
    rows = [("GPU", env["gpu"]), ("compute capability", env["compute_capability"]), ("driver", env["driver"]),
            ("CUDA", env["cuda"]), ("TensorRT", env["tensorrt"]),
            ("ONNX Runtime", f"{env['onnxruntime']} ({', '.join(env['onnxruntime_providers']) or 'no providers'})"),
            ("polygraphy", env["polygraphy"]), ("cuda-python", env["cuda_python"]), ("torch", env["torch"]),
            ("CPU", f"{env['cpu']} ({env['cpu_cores']} cores)"), ("mesc", env["mesc"])]
    return [f"  {name:19s} {value}" for name, value in rows]
