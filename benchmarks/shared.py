"""Pieces several benchmark scripts share: an ONNX Runtime CPU session of an in-memory model and
the median time of a call (the policy-cost scripts), a package's input size, and a calibrated
pipeline run over labelled images with its mIoU (the held-out scripts)."""

from __future__ import annotations

import numpy as np

from mesc.benchmarks.harness import measure as time_calls, summarize
from mesc.evaluation.metrics import class_counts, miou


def cpu_session(model, threads: int):
    """An ONNX Runtime CPU session of an in-memory ONNX model, on ``threads`` intra-op threads
    (0 or None: ONNX Runtime's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def median_ms(fn, warmup: int, iters: int) -> float:
    """Median milliseconds of ``fn()`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    # the harness reads a timed call's return value as its part timings: discard results
    return summarize(time_calls(lambda: fn() and None, warmup, iters))["median"]


def input_size(pkg) -> tuple[int, int]:
    """A package's input height and width."""
    return tuple(int(v) for v in pkg.input.shape[2:])


def run_and_score(pipe, images, masks, num_classes, exit=None) -> dict:
    """Each image through ``pipe`` alone (``exit``: forced, None: the policy decides): per-image
    latency and exit, and the mIoU over all of them from summed class counts."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    lat, exits = [], []
    for img, mask in zip(images, masks):
        res = pipe([img], exit=exit)[0]
        lat.append(res.timings["total_ms"])
        exits.append(res.exit)
        i, u = class_counts(res.labels, mask, num_classes)
        inter += i
        union += u
    return {"latency_ms": lat, "exits": exits, "miou": float(miou(inter[None], union[None])[0])}
