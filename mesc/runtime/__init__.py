"""The mesc runtime: run a package with early exit, torch-free (numpy plus the backend).

    pipe = mesc.load("pkg", backend="auto", device="cpu")
    result = pipe(image)                 # H x W x C uint8, normalised per the manifest
    results = pipe(batch)                # N x C x H x W float32, already normalised
    results = pipe(batch, exit="exit1")  # budgeted: only the segments exit1 needs
    for preds in pipe.anytime(batch, deadline=0.05): ...
    pipe.set_thresholds("exit0", th_pix=0.85, th_img=0.7)
"""

from __future__ import annotations

import os

from mesc.errors import MescError
from mesc.runtime.backends.onnxrt.loader import SPIN_MODES
from mesc.runtime.devices import Device, parse_device
from mesc.runtime.errors import BackendError, DeviceError, EngineMismatchError, InputError
from mesc.runtime.pipeline import Pipeline, Result

BACKENDS = ("auto", "onnxruntime", "tensorrt")

# The runner options each backend takes (``mesc.load(..., **options)``), with the check each
# value must pass and what it is: a misspelt or mistyped option is refused before anything loads.
_IS_BOOL = (lambda v: isinstance(v, bool), "True or False")
RUNNER_OPTIONS = {
    "onnxruntime": {
        "threads": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                    "a whole number >= 1 (or None: ONNX Runtime's default)"),
        "spin": (lambda v: isinstance(v, bool) or v in SPIN_MODES,
                 "'run', 'off' or 'on' (True: 'on', False: 'off')"),
        "tensorrt_ep": _IS_BOOL,
        "trt_cache": (lambda v: v is None or isinstance(v, (str, os.PathLike)), "a folder path (or None)"),
    },
    "tensorrt": {
        "verbose": _IS_BOOL,
        "dla_core": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
                     "a whole number >= 0 (or None)"),
    },
}


def check_runner_options(backend: str, options: dict, call: str = "mesc.load") -> None:
    """Refuse an option ``backend`` does not take (naming the ones it takes, and the likely one
    meant) or a value of the wrong type, as a :class:`MescError` naming the argument."""
    import difflib

    if backend not in BACKENDS:
        raise BackendError(f"{call}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    known = {}
    for name in (RUNNER_OPTIONS if backend == "auto" else (backend,)):
        known.update(RUNNER_OPTIONS[name])
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known) + ["backend", "device", "target", "precision"], 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MescError(f"{call}: unknown argument {key!r}{hint} (backend {backend} takes backend, device, "
                            f"target, precision, {', '.join(known)})")
        ok, what = known[key]
        if not ok(value):
            raise MescError(f"{call}: {key} must be {what}, got {value!r}")


def check_load_arguments(path, backend, device, target, precision, options: dict, call: str = "mesc.load") -> None:
    """The arguments of :func:`load`, checked before the package is read: each refusal is a
    :class:`MescError` naming the argument."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise MescError(f"{call}: path must be a package folder (a str or os.PathLike), got {path!r}")
    if not isinstance(backend, str):
        raise BackendError(f"{call}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(device, (str, Device)):
        raise DeviceError(f"{call}: device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    for name, value in (("target", target), ("precision", precision)):
        if value is not None and not isinstance(value, str):
            raise MescError(f"{call}: {name} must be a name (str) or None, got {value!r}")
    check_runner_options(backend, options, call)


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
    check_runner_options(backend, options, "make_runner")
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
    if backend == "auto":
        backend = "tensorrt" if dev.is_cuda and pkg.engines and tensorrt_installed() \
            else "onnxruntime"
    if backend == "tensorrt":
        from mesc.runtime.backends.trt import EnginesFromPlans, PlansFromPackage, TrtRunner

        plans = PlansFromPackage(pkg, dev, target=target, precision=precision)
        runner = TrtRunner(EnginesFromPlans(plans, segments=pkg.segments, **options), dev, cuda_graphs, stream)
        runner.precision = plans.variant
        return runner
    from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage

    if target is not None:
        raise BackendError("--target: targets select TensorRT engines; the onnxruntime backend runs the ONNX segments "
                           "(--precision picks the graphs 'mesc prepare' wrote)")
    runner = OrtRunner(SessionsFromPackage(pkg, dev, precision=precision, **options), dev, cuda_graphs, stream)
    runner.precision = precision or "fp32"
    return runner


def load(path, backend: str = "auto", device="cpu", target: str | None = None, precision: str | None = None,
         cuda_graphs: bool = True, stream: int | None = None, **options) -> Pipeline:
    """Load the package at ``path`` (manifest and checksums verified) as a ready pipeline.

    ``target`` and ``precision`` pick the TensorRT build (defaults: the only one, or the one for
    this GPU); on onnxruntime ``precision`` ("fp16", "int8") runs the graphs ``mesc prepare``
    wrote. ``options`` go to the runner: for onnxruntime ``threads`` (intra-op threads per
    segment), ``spin`` (how those threads wait: "run", the default, spins only while a segment
    runs; "off", "on"), ``tensorrt_ep`` (ORT's TensorRT execution provider), ``trt_cache``.

    On a CUDA device, ``cuda_graphs=False`` runs every segment uncaptured (for comparison, and
    for drivers where capture fails), and ``stream`` (a ``cudaStream_t`` as an int, e.g.
    ``torch.cuda.current_stream().cuda_stream``) makes mesc queue all its work on the caller's
    stream instead of its own (the TensorRT backend; onnxruntime >= 1.17); the default stream (0)
    is not shared: mesc then orders its own stream after the caller's input by events.
    """
    from mesc.package import Package

    check_load_arguments(path, backend, device, target, precision, options)
    pkg = Package.load(path)
    return Pipeline(pkg, make_runner(pkg, backend, device, target, precision, cuda_graphs, stream, **options))


__all__ = ["load", "make_runner", "tensorrt_installed", "check_load_arguments", "check_runner_options", "Pipeline",
           "Result", "BACKENDS", "RUNNER_OPTIONS", "BackendError", "DeviceError",
           "EngineMismatchError", "InputError"]
