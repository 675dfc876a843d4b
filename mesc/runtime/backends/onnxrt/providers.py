"""ONNX Runtime execution providers: which ones a session asks for, with which options, and the
check that it got them.

onnxruntime does not refuse a provider it cannot create: ``InferenceSession`` prints "EP Error
... Falling back to [...]" and retries with CUDA/CPU (``onnxruntime_inference_collection.py``,
1.16.3 to 1.32), and a CUDA provider whose libraries fail to load leaves a CPU session. So every
provider asked for is looked up in ``sess.get_providers()`` afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from mesc.lazy import require
from mesc.runtime.devices import Device, check_cuda_device
from mesc.runtime.errors import DeviceError, MissingDependencyError
from mesc.targets import parse_version

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

# The TensorRT EP keys mesc sets, by the onnxruntime release that first accepts them. Read from
# the key strings of the onnxruntime-gpu wheels' pybind module (1.16.3, 1.17.0, 1.31.1), which
# throws "Invalid TensorRT EP option" on any other key: the session then falls back to CUDA.
TENSORRT_EP_KEYS = {
    (1, 16): ("device_id", "trt_max_workspace_size", "trt_fp16_enable", "trt_int8_enable", "trt_dla_enable",
              "trt_dla_core", "trt_engine_cache_enable", "trt_engine_cache_path", "trt_timing_cache_enable"),
    (1, 17): ("trt_timing_cache_path",),
}


# The CUDA EP features the runner's stream path uses, by the onnxruntime release that has them
# from Python: ``user_compute_stream`` as a CUDA EP option (microsoft/onnxruntime#19229, 1.17;
# ``has_user_compute_stream`` is then set by onnxruntime itself), several CUDA graphs per session
# picked by the ``gpu_graph_id`` run option (#19636, 1.18). The ``disable_synchronize_execution_providers``
# run option (#14088) is in every release mesc supports. Older releases keep the synchronous path.
CUDA_STREAM_SINCE = (1, 17)
CUDA_GRAPH_IDS_SINCE = (1, 18)


def ort():
    return require("onnxruntime", extra="core", purpose="the ONNX Runtime backend")


def cuda_features(version=None) -> dict:
    """Which of the stream path's features onnxruntime ``version`` (default: installed) has."""
    have = parse_version(version) if version is not None else ort_version()
    return {"stream": have[:2] >= CUDA_STREAM_SINCE, "graphs": have[:2] >= CUDA_GRAPH_IDS_SINCE}


def with_cuda_options(providers: list, stream_ptr: int | None, cuda_graph: bool) -> list:
    """``providers`` with the CUDA EP told to queue on ``stream_ptr`` and (``cuda_graph``) to
    capture CUDA graphs."""
    extra = {}
    if stream_ptr is not None:
        extra["user_compute_stream"] = str(int(stream_ptr))
    if cuda_graph:
        extra["enable_cuda_graph"] = "1"
    return [(CUDA, {**p[1], **extra}) if provider_name(p) == CUDA else p for p in providers]


def ort_version() -> tuple[int, ...]:
    return parse_version(ort().__version__)


def provider_name(provider) -> str:
    """``"X"`` or ``("X", {options})`` -> ``"X"``."""
    return provider if isinstance(provider, str) else provider[0]


def tensorrt_ep_options(precision: str | None, cache_dir, device_id: int = 0, version=None,
                        workspace_mb: int | None = None, fast_fp16: bool = False,
                        dla_core: int | None = None) -> dict:
    """TensorRT EP options for graphs in ``precision`` (their FP16 casts and Q/DQ come from
    ``mesc prepare``; the flags let weakly typed TensorRT 8.x keep them), with the engine and
    timing caches in ``cache_dir``; only keys onnxruntime ``version`` (default: installed) knows."""
    opts = {
        "device_id": device_id,
        "trt_fp16_enable": precision == "fp16" or (precision == "int8" and fast_fp16),
        "trt_int8_enable": precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if workspace_mb:
        opts["trt_max_workspace_size"] = workspace_mb << 20
    if dla_core is not None:
        opts.update(trt_dla_enable=True, trt_dla_core=dla_core)
    have = parse_version(version) if version is not None else ort_version()
    known = {k for since, keys in TENSORRT_EP_KEYS.items() if have[:2] >= since for k in keys}
    return {k: v for k, v in opts.items() if k in known}


def tensorrt_cache_dir(pkg, precision: str | None) -> Path:
    """The user cache for the TensorRT EP's engines of ``pkg`` in ``precision`` (a package may
    sit on read-only media; the EP names its engines by graph hash, GPU and TensorRT version)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(Path(pkg.root).resolve()).encode()).hexdigest()[:16]
    return base / "mesc" / "ort-tensorrt" / f"{Path(pkg.root).name}-{key}" / (precision or "fp32")


@functools.lru_cache(maxsize=None)  # functools.cache is 3.9+
def preload_cuda_libraries() -> None:
    """Load the CUDA/cuDNN libraries of the pip wheels before the first CUDA session.

    onnxruntime-gpu for CUDA 12/13 finds them only once loaded (importing torch first does that
    as a side effect); ``preload_dlls(cuda=True, cudnn=True, msvc=True, directory=None)`` exists
    from 1.21.0 (not in 1.20.1) and is a no-op on a build without CUDA.
    """
    preload = getattr(ort(), "preload_dlls", None)
    if preload is not None:
        preload()


def providers_for(device: Device, tensorrt_ep: bool = False, precision: str | None = None,
                  cache_dir=None) -> list:
    """The providers for sessions on ``device``: CPU; CUDA then CPU; with ``tensorrt_ep`` the
    TensorRT EP first (options from :func:`tensorrt_ep_options`, caches in ``cache_dir``)."""
    if not device.is_cuda:
        return [CPU]
    available = ort().get_available_providers()
    if CUDA not in available:
        raise MissingDependencyError(
            f"device {device} needs onnxruntime with CUDA, but the installed onnxruntime has only "
            f"{available}; install it with: pip install 'mesc[gpu]' (and uninstall the CPU-only onnxruntime)")
    preload_cuda_libraries()
    check_cuda_device(device)
    chosen = [(CUDA, {"device_id": device.index}), CPU]
    if tensorrt_ep:
        if TENSORRT not in available:
            raise MissingDependencyError(
                "the TensorRT execution provider is not in this onnxruntime build; install onnxruntime-gpu "
                "and TensorRT: pip install 'mesc[gpu,trt]'")
        chosen.insert(0, (TENSORRT, tensorrt_ep_options(precision, cache_dir, device.index)))
    return chosen


def helper_providers(providers: list) -> list:
    """``providers`` without the TensorRT EP: the runner's own small graphs (the row gather)
    would each cost an engine build there, for an op CUDA runs as well."""
    return [p for p in providers if provider_name(p) != TENSORRT]


def check_providers(sess, providers: list, what: str) -> None:
    """Raise :class:`DeviceError` unless ``sess`` runs on every provider of ``providers``."""
    got = sess.get_providers()
    missing = [provider_name(p) for p in providers if provider_name(p) != CPU and provider_name(p) not in got]
    if missing:
        why = ("the TensorRT libraries failed to load or an option was refused" if TENSORRT in missing
               else "the CUDA/cuDNN libraries are missing or incompatible")
        raise DeviceError(f"onnxruntime fell back to {got} for {what}: {', '.join(missing)} was asked for "
                          f"but did not load ({why}; onnxruntime printed the reason above)")


def ort_trt_provider_options(target: str, precision: str, cache_dir, dla_core: int | None = None,
                             workspace_mb: int | None = None, trt_version=None, device_id: int = 0,
                             ort_version=None) -> list:
    """Providers for an ``onnxruntime.InferenceSession`` on ORT's TensorRT execution provider for
    a build ``target``, with CUDA and CPU behind it for the nodes TensorRT does not take.

    Load the graphs of :func:`mesc.engines.build.source_graphs` with them: FP16/INT8 precision is
    in those graphs (Q/DQ are honoured by the EP), the flags only matter where TensorRT still
    types weakly.
    """
    from mesc.errors import MescError
    from mesc.targets import check_build_request, get_target

    tgt = get_target(target)
    check_build_request(tgt, precision, trt_version, dla_core, None)
    if precision == "int8" and dla_core is not None and (trt_version is None or parse_version(trt_version) < (10,)):
        raise MescError("INT8 on DLA with TensorRT 8.x needs implicit calibration, which mesc does through "
                        "'mesc build' (the ORT TensorRT EP wants its own calibration table)")
    opts = tensorrt_ep_options(precision, cache_dir, device_id, ort_version, workspace_mb or tgt.workspace_mb,
                               tgt.fast_fp16, dla_core)
    return [(TENSORRT, opts), (CUDA, {"device_id": device_id}), CPU]
