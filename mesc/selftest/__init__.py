"""``mesc selftest``: does this device run mesc's engines as ONNX Runtime CPU FP32 does?

A user's first command on a new device (a Jetson, a GTX box), and the report they attach to a
bug: the environment, then every segment and every exit of a package run on the backend and
device under test beside ONNX Runtime CPU FP32 on the same images (label agreement, logit and
confidence errors, exit decisions), every segment timed, and one PASS/FAIL line per check
against the precision's bars (:mod:`mesc.selftest.tolerances`).

Without a package the embedded demo model is exported into a temporary directory (torch
needed) and checked on the demo's synthetic scenes; a user's package is checked on random
smooth images. The demo's FP16/INT8 graphs and engines are prepared and built here; a user's
package must have its prepared graphs (TensorRT engines missing for the target are built).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from mesc.errors import MescError
from mesc.selftest.compare import TensorStats, compare_decisions
from mesc.selftest.environment import environment
from mesc.selftest.tolerances import BARS
from mesc.selftest.verdicts import checks, format_report
from mesc.timestamps import utc_now

SCHEMA = "mesc-selftest/1"
BACKENDS = ("tensorrt", "onnxruntime")
_TEST_SEED, _CALIB_SEED = 1, 2


def resolve(backend: str | None, device: str | None) -> tuple[str, str]:
    """Defaults: cuda:0 where a CUDA device answers, else the CPU; TensorRT on a CUDA device
    where it is installed, else ONNX Runtime."""
    from mesc.runtime import tensorrt_installed
    from mesc.runtime.devices import cuda_failure, parse_device, visible_cuda_devices

    if device is None:
        if backend == "tensorrt" and visible_cuda_devices() == 0:
            raise MescError(f"--backend tensorrt needs a CUDA device, and none answers here: {cuda_failure()}")
        device = "cuda:0" if visible_cuda_devices() > 0 else "cpu"
    dev = parse_device(device)
    if backend is None:
        backend = "tensorrt" if dev.is_cuda and tensorrt_installed() else "onnxruntime"
    if backend not in BACKENDS:
        raise MescError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "tensorrt" and not dev.is_cuda:
        raise MescError("--backend tensorrt runs on a CUDA device: pass --device cuda:0")
    return backend, str(dev)


def _check_request(target: str, precision: str, backend: str) -> None:
    from mesc.targets import PRECISIONS, check_build_request, get_target

    if precision not in PRECISIONS:
        raise MescError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    tgt = get_target(target)
    if backend == "tensorrt":
        check_build_request(tgt, precision, None)


def selftest(package=None, target: str = "host", precision: str = "fp32", backend: str | None = None,
             device: str | None = None, images: int = 16, runs: int = 5, json_path=None, progress=None,
             force: bool = False) -> dict:
    """Run the self-test; returns the report (``report["passed"]``), also written to ``json_path``
    (with the error, where one stopped it; an existing file only with ``force``)."""
    say = progress or (lambda msg: None)
    backend, device = resolve(backend, device)
    _check_request(target, precision, backend)
    from mesc.ranges import check_int

    check_int("--images", images, 1)
    check_int("--runs", runs, 1)
    if json_path:
        from mesc.package.outputs import check_file_output

        check_file_output(json_path, "--json", force, inputs=[("PACKAGE", package)] if package else [])
    from mesc.runtime.devices import parse_device

    report = {"schema": SCHEMA, "created": utc_now(),
              "request": {"package": None if package is None else str(package), "demo": package is None,
                          "target": target, "precision": precision, "backend": backend, "device": device,
                          "images": images},
              "environment": environment(parse_device(device)), "error": None}
    try:
        with tempfile.TemporaryDirectory(prefix="mesc-selftest-") as work:
            _run(report, package, Path(work), say, runs)
    except BaseException as err:
        report["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        if json_path:
            from mesc.package.staging import atomic_file

            with atomic_file(json_path) as tmp:
                tmp.write_text(json.dumps(report, indent=2, default=_plain) + "\n")
    return report


def _plain(value):
    """numpy scalars (and anything else odd) as JSON."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _run(report: dict, package, work: Path, say, runs: int) -> None:
    from mesc.package import Package
    from mesc.runtime import load
    from mesc.selftest import subject

    r = report["request"]
    pkg = subject.export_demo(work, say) if package is None else Package.load(package)
    shape = pkg.input.shape
    if r["demo"]:
        imgs, source = subject.scenes(shape, r["images"], _TEST_SEED), "synthetic scenes"
        calib = None if r["precision"] == "fp32" else subject.write_images(
            subject.scenes(shape, 32, _CALIB_SEED), work / "calib")
    else:
        imgs, source, calib = subject.random_images(shape, r["images"], _TEST_SEED), "random smooth images", None
    report["build"] = None
    if r["backend"] == "tensorrt":
        report["build"] = subject.ensure_engines(pkg, r["target"], r["precision"], calib, say)
    elif r["demo"]:
        pkg = subject.ensure_prepared(pkg, r["precision"], calib, say)
    pkg = Package.load(pkg.root)
    report["package"] = {"root": str(pkg.root), "model": pkg.source.get("model"),
                         "input": list(pkg.input.shape), "segments": [s.name for s in pkg.segments],
                         "exits": [e.name for e in pkg.exits],
                         "precisions": sorted(pkg.precisions),
                         "engines": {t: sorted(v) for t, v in pkg.engines.items()}}
    say("running the reference (ONNX Runtime CPU FP32) and the backend under test")
    with load(pkg.root, backend="onnxruntime", device="cpu") as ref, \
            subject.open_tested(pkg, r["backend"], r["device"], r["target"], r["precision"]) as test:
        size = ref.static_batch or min(4, len(imgs))
        batches = [ref.prepare(imgs[i:i + size])[0] for i in range(0, len(imgs), size)]
        if len(batches[-1]) < size and ref.static_batch:  # a static batch: repeat the last image
            last = batches[-1]
            batches[-1] = np.concatenate([last, np.repeat(last[-1:], size - len(last), 0)])
        stats, ref_results, test_results = TensorStats(pkg), [], []
        for x in batches:
            stats.add(ref.tensors(x), test.tensors(x))
            ref_results += ref(x)
            test_results += test(x)
        bars = BARS[r["precision"]]
        decisions = compare_decisions(pkg, ref_results[:len(imgs)], test_results[:len(imgs)], bars.confidence_err)
        times = _median_times(test, batches[0], runs)
        report["runtime_path"] = test.runner.path()
    seg_errors = stats.segment_report()
    report.update(
        images={"count": len(imgs), "source": source, "batch": size},
        timing_runs=runs,
        segments={name: {"ms": times.get(name), **seg_errors[name]} for name in seg_errors},
        decision_ms={k: v for k, v in times.items() if k.startswith("decision:")},
        exits=stats.exit_report(), decisions=decisions)
    report["checks"] = checks(report["exits"], decisions, bars)
    report["passed"] = all(c["passed"] for c in report["checks"])


def _median_times(pipe, x, runs: int) -> dict:
    pipe.time_segments(x)  # warm-up: first runs allocate and pick kernels
    samples = [pipe.time_segments(x) for _ in range(max(runs, 1))]
    return {k: float(np.median([s[k] for s in samples if k in s])) for k in samples[0]}


__all__ = ["selftest", "format_report", "resolve", "BARS", "SCHEMA"]
