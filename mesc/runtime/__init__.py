"""The mesc runtime: run a package with early exit, torch-free (numpy plus the backend).

    pipe = mesc.load("pkg", backend="auto", device="cpu")
    result = pipe(image)                 # H x W x C uint8, normalised per the manifest
    results = pipe(batch)                # N x C x H x W float32, already normalised
    results = pipe(batch, exit="exit1")  # budgeted: only the segments exit1 needs
    for preds in pipe.anytime(batch, deadline=0.05): ...
    pipe.set_thresholds("exit0", th_pix=0.85, th_img=0.7)
"""

from __future__ import annotations

from mesc.runtime.devices import parse_device
from mesc.runtime.errors import BackendError, DeviceError, EngineMismatchError, InputError
from mesc.runtime.pipeline import Pipeline, Result

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def tensorrt_installed() -> bool:
    """Whether TensorRT can be imported here (looked up, not imported: importing it is slow);
    ``backend="auto"``, ``mesc selftest`` and the export's build hint ask it."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def make_runner(pkg, backend: str = "auto", device="cpu", target: str | None = None, precision: str | None = None,
                cuda_graphs: bool = True, stream: int | None = None, **options):
    """The runner for ``backend`` on ``device``; ``auto`` takes TensorRT on a CUDA device when the
    package has engines and TensorRT is installed, else ONNX Runtime. ``cuda_graphs`` and
    ``stream`` go to the runner, ``options`` to its loader."""
    dev = parse_device(device)
    if not isinstance(cuda_graphs, bool):
        raise BackendError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
    if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int) or not dev.is_cuda):
        raise BackendError(f"stream must be a CUDA stream handle (an int, e.g. torch.cuda.current_stream()"
                           f".cuda_stream) on a CUDA device, got {stream!r} on {dev}")
    if stream == 0:
        # the legacy default stream cannot be captured into a CUDA graph, and onnxruntime takes 0
        # as "no stream": mesc keeps a stream of its own, ordered after the caller's by events
        stream = None
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "tensorrt" if dev.is_cuda and pkg.engines and tensorrt_installed() \
            else "onnxruntime"
    if backend == "tensorrt":
        from mesc.runtime.backends.trt import EnginesFromPlans, PlansFromPackage, TrtRunner

        plans = PlansFromPackage(pkg, dev, target=target, precision=precision)
        return TrtRunner(EnginesFromPlans(plans, segments=pkg.segments, **options), dev, cuda_graphs, stream)
    from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage

    if target is not None:
        raise BackendError("--target: targets select TensorRT engines; the onnxruntime backend runs the ONNX segments "
                           "(--precision picks the graphs 'mesc prepare' wrote)")
    return OrtRunner(SessionsFromPackage(pkg, dev, precision=precision, **options), dev, cuda_graphs, stream)


def load(path, backend: str = "auto", device="cpu", target: str | None = None, precision: str | None = None,
         **options) -> Pipeline:
    """Load the package at ``path`` (manifest and checksums verified) as a ready pipeline.

    ``target`` and ``precision`` pick the TensorRT build (defaults: the only one, or the one for
    this GPU); on onnxruntime ``precision`` ("fp16", "int8") runs the graphs ``mesc prepare``
    wrote. ``options`` go to the runner: for onnxruntime ``threads`` (intra-op threads per
    segment), ``spin``, ``tensorrt_ep`` (ORT's TensorRT execution provider), ``trt_cache``.

    On a CUDA device, ``cuda_graphs=False`` runs every segment uncaptured (for comparison, and
    for drivers where capture fails), and ``stream`` (a ``cudaStream_t`` as an int, e.g.
    ``torch.cuda.current_stream().cuda_stream``) makes mesc queue all its work on the caller's
    stream instead of its own (the TensorRT backend; onnxruntime >= 1.17); the default stream (0)
    is not shared: mesc then orders its own stream after the caller's input by events.
    """
    from mesc.package import Package

    pkg = Package.load(path)
    return Pipeline(pkg, make_runner(pkg, backend, device, target, precision, **options))


__all__ = ["load", "make_runner", "tensorrt_installed", "Pipeline", "Result", "BACKENDS", "BackendError", "DeviceError",
           "EngineMismatchError", "InputError"]
