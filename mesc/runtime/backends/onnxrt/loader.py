"""ONNX Runtime loader: a package's segments as inference sessions on one device.

It decides which graph each segment runs (the package's FP32 one, or a prepared FP16/INT8 graph
of the same I/O swapped in), which segments load at all, the session options and the execution
providers; the runner only runs what it is handed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from mesc.errors import MescError, PackageError
from mesc.runtime.backends.base import Loader
from mesc.runtime.backends.io_check import io_mismatch
from mesc.runtime.backends.onnxrt.precisions import prepared_graphs
from mesc.runtime.backends.onnxrt.providers import (TENSORRT, check_providers, helper_providers, ort,
                                                     ort_version, provider_name, providers_for,
                                                     tensorrt_cache_dir, with_cuda_options)
from mesc.runtime.devices import Device
from mesc.runtime.errors import BackendError, DeviceError


# ONNX Runtime 1.16-1.18 (the releases JetPack 5's Python 3.8 gets) return wrong and run-to-run
# different values from a graph whose spatial sizes are symbolic when the memory pattern is on:
# the MESS policy of a dynamic-size head at 23 x 8, stride 4, wide band, counted other confident
# pixels than the reference in 84 of 120 runs on 1.16.0, 1.17.3 and 1.18.1, in none with
# enable_mem_pattern off, and in none on 1.19.2 (tests/exporters/policy/test_mess_graph.py).
MEM_PATTERN_FIXED = (1, 19)


# How a session's intra-op threads wait for work: "run" spins between the operators of a run and
# stops as the run returns (session.force_spinning_stop), "off" sleeps between operators, "on" is
# onnxruntime's default (spinning goes on for a while after the run).
SPIN_MODES = ("run", "off", "on")


def spin_mode(spin) -> str:
    """``spin`` as one of :data:`SPIN_MODES` (True and False, its earlier values, mean "on" and "off")."""
    if isinstance(spin, bool):
        return "on" if spin else "off"
    if spin not in SPIN_MODES:
        raise BackendError(f"spin must be one of {', '.join(SPIN_MODES)} (or True/False), got {spin!r}")
    return spin


def session_options(threads: int | None = None, spin="run", optimize: bool = True):
    """Options for chained sessions.

    Each session has its own intra-op pool, and a chain runs several small sessions one after
    another. Threads that sleep between operators ("off") make every parallel operator pay a
    wake-up; threads that keep spinning after their run ("on", onnxruntime's default) take the
    cores from the next segment's pool (on 2 cores the demo's chain ran 8x slower). "run", the
    default, spins only while a segment runs: on the demo (2-core CPU, 128x256) the exit-1 path
    took 2.3 ms against 2.9 ms with "off", the final exit 5.9 against 6.7 ms
    (``python -m mesc.benchmarks.spin``; ``mesc bench --spin`` on any package). Before ONNX
    Runtime 1.19 the memory pattern is off (see ``MEM_PATTERN_FIXED``): it only saves allocations.
    """
    mode = spin_mode(spin)
    rt = ort()
    so = rt.SessionOptions()
    if ort_version() < MEM_PATTERN_FIXED:
        so.enable_mem_pattern = False
    # optimize=False keeps Q/DQ pairs as separate float ops (TensorRT's numerics): ORT's fused
    # QLinearConv saturates int16 sums on x86 without VNNI and would misreport INT8 accuracy.
    so.graph_optimization_level = (rt.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else rt.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    for pool in ("intra_op", "inter_op"):
        so.add_session_config_entry(f"session.{pool}.allow_spinning", "0" if mode == "off" else "1")
    if mode == "run":
        so.add_session_config_entry("session.force_spinning_stop", "1")
    so.log_severity_level = 3
    return so


def open_session(model, options, providers: list, device: Device, what: str):
    """One ``InferenceSession`` of ``model`` (a path or serialised bytes), refused with a
    named error where it fails or lands on another device than asked."""
    try:
        sess = ort().InferenceSession(model, sess_options=options, providers=providers)
    except Exception as err:
        if device.is_cuda:
            raise DeviceError(f"onnxruntime cannot use {device} for {what}: {err}") from err
        raise BackendError(f"onnxruntime cannot load {what}: {err}") from err
    check_providers(sess, providers, what)
    return sess


# ONNX Runtime's type strings, as numpy names them (the manifest's spelling)
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def session_io(sess) -> tuple[list, list]:
    """(inputs, outputs) of a session as :func:`~mesc.runtime.backends.io_check.io_mismatch` rows."""
    def rows(args):
        return [(a.name, _ORT_DTYPES.get(a.type, a.type),
                 None if a.shape is None else [d if isinstance(d, int) else None for d in a.shape]) for a in args]

    return rows(sess.get_inputs()), rows(sess.get_outputs())


def check_session_io(sess, segment: dict, graph: str, package) -> None:
    """Refuse a session whose I/O is not the segment's in the manifest, before anything runs."""
    problem = io_mismatch(segment, *session_io(sess))
    if problem:
        raise PackageError(f"segment '{segment.name}' {problem} (package {package}, graph {graph}); "
                           f"the graph is not the one the manifest describes: export the package again")


def segment_graphs(pkg, files: dict | None = None, segments: list[str] | None = None) -> dict[str, str]:
    """segment name -> the ONNX graph it runs, in execution order: the package's own, or the one
    ``files`` swaps in; only ``segments`` where given."""
    files = files or {}
    return {seg.name: str(files.get(seg.name, pkg.path(seg.file)))
            for seg in pkg.segments if not segments or seg.name in segments}


@dataclass
class Sessions:
    """What :class:`SessionsFromPackage` makes: a session per segment, and the providers the
    runner opens its own helper graphs on."""

    by_segment: dict
    providers: list
    device: Device
    # segment -> why its session runs without CUDA graphs where they were asked for
    graph_fallbacks: dict = None

    def helper(self, model, what: str):
        """A single-threaded session of a small graph of the runner's own on the same device."""
        return open_session(model, session_options(1), helper_providers(self.providers), self.device, what)


class SessionsFromPackage(Loader):
    """``SessionsFromPackage(pkg, device, ...)()`` -> :class:`Sessions` for the package's segments.

    ``files`` maps segment names to other ONNX graphs of the same I/O (the prepared FP16 or INT8
    ones) to run instead of the package's FP32 graphs; ``segments`` loads only those;
    ``optimize=False`` turns graph optimisation off (fake-quantised graphs); ``precision``
    ("fp16", "int8") runs the graphs ``mesc prepare`` wrote; ``tensorrt_ep`` puts ORT's TensorRT
    EP first, its engines cached in ``trt_cache`` (default: a user cache dir per package). Each
    session's inputs and outputs are checked against the manifest as it opens (:class:`PackageError`).
    """

    def __init__(self, pkg, device: Device, threads: int | None = None, spin="run",
                 tensorrt_ep: bool = False, segments: list[str] | None = None,
                 files: dict | None = None, optimize: bool = True, precision: str | None = None,
                 trt_cache=None):
        self.device = device
        self.graphs = segment_graphs(pkg, files if files is not None else prepared_graphs(pkg, precision), segments)
        self.entries, self.root = {seg.name: seg for seg in pkg.segments}, pkg.root
        self.threads, self.spin, self.optimize = threads, spin_mode(spin), optimize
        # Checked here, not on the call: a missing CUDA provider fails at mesc.load.
        cache = (trt_cache or tensorrt_cache_dir(pkg, precision)) if tensorrt_ep else None
        self.providers = providers_for(device, tensorrt_ep, precision, cache)
        # set by the runner's stream path before the call: the CUDA stream every session queues
        # on, and whether to capture CUDA graphs
        self.compute_stream, self.cuda_graphs = None, False

    @property
    def tensorrt_ep(self) -> bool:
        return any(provider_name(p) == TENSORRT for p in self.providers)

    def call_impl(self) -> Sessions:
        so = session_options(self.threads, self.spin, self.optimize)
        providers = self.providers
        if self.compute_stream is not None:
            providers = with_cuda_options(providers, self.compute_stream, False)
        graphed = with_cuda_options(providers, self.compute_stream, True) if self.cuda_graphs else None
        sessions, fallbacks = {}, {}
        for name, path in self.graphs.items():
            sess = None
            if graphed is not None:
                # onnxruntime refuses a CUDA graph where a node is not on the CUDA EP (or the graph
                # has control flow): that segment then runs uncaptured
                try:
                    sess = open_session(path, so, graphed, self.device, name)
                except MescError as err:
                    fallbacks[name] = str(err).splitlines()[0]
                    warnings.warn(f"segment '{name}' runs without a CUDA graph: {fallbacks[name]}", stacklevel=3)
            if sess is None:
                sess = open_session(path, so, providers, self.device, name)
            sessions[name] = sess
            check_session_io(sessions[name], self.entries[name], path, self.root)
        return Sessions(sessions, providers, self.device, fallbacks)
