"""Timing and statistics for ``mesc bench``: interleaved rounds, summaries, environment.

The clocks are the runtime's (:mod:`mesc.runtime.clock`): the host clock brackets the work with
a device synchronisation on both sides (queued work must not leak into or out of the interval);
on a CUDA stream that the runner exposes, CUDA events time the device work itself.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

import numpy as np

from mesc.runtime.clock import HostClock


# Rounds ---------------------------------------------------------------------------------------

def interleave(variants: dict, warmup: int, iters: int, clock=None, progress=None) -> dict:
    """Run every variant ``warmup + iters`` times, round-robin with a rotating order so that drift
    on a shared machine hits all alike; the first ``warmup`` rounds are not kept.

    A variant is a callable; it may return a dict of named part timings (ms) of its own, which are
    kept per round as well. Returns ``{name: {"total": [ms...], "parts": {part: [ms...]}}}``.
    """
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got {warmup} and {iters}")
    clock = clock or HostClock()
    names = list(variants)
    out = {n: {"total": [], "parts": {}} for n in names}
    for i in range(warmup + iters):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t = clock.start()
            parts = variants[name]()
            ms = clock.stop(t)
            if i >= warmup:
                out[name]["total"].append(ms)
                for p, v in (parts or {}).items():
                    out[name]["parts"].setdefault(p, []).append(float(v))
            if progress is not None:
                progress(name, i < warmup)
    return out


def measure(fn, warmup: int, iters: int, clock=None) -> list[float]:
    """Milliseconds of ``iters`` calls of ``fn`` after ``warmup`` untimed-for-the-record ones."""
    return interleave({"fn": fn}, warmup, iters, clock)["fn"]["total"]


def summarize(samples) -> dict:
    """Median, p90, p99 (numpy's linear interpolation), mean, std (ddof 1), IQR, min, max, n."""
    a = np.asarray(samples, np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    q25, q50, q75, q90, q99 = np.percentile(a, [25, 50, 75, 90, 99])
    return {"n": int(a.size), "median": float(q50), "p90": float(q90), "p99": float(q99),
            "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "iqr": float(q75 - q25), "min": float(a.min()), "max": float(a.max())}


# Environment ------------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ort_version() -> str | None:
    """The ONNX Runtime this process imports: with both wheels about (onnxruntime and
    onnxruntime-gpu, or one on PYTHONPATH), the metadata of the other may be found first."""
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return _version("onnxruntime") or _version("onnxruntime-gpu")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device, threads: int | None = None, precision: str = "fp32") -> dict:
    """What the figures depend on: device name, library versions, precision, CPU threads."""
    env = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "threads": threads or os.cpu_count(),
           "precision": precision, "python": platform.python_version(), "numpy": np.__version__,
           "onnxruntime": _ort_version(), "onnx": _version("onnx"),
           "torch": _version("torch"), "tensorrt": _version("tensorrt"), "os": platform.platform()}
    if getattr(device, "is_cuda", False):
        from mesc.runtime import devices

        env["device"] = devices.device_name(device.index) or f"cuda:{device.index}"
        env["compute_capability"] = devices.compute_capability(device.index)
        env.update(devices.cuda_versions())
    else:
        env["device"] = env["cpu"]
    return env
