"""The segment clock: how mesc times a segment, on the host and on a CUDA stream.

One definition for the pipeline's per-image timings, ``Pipeline.time_segments``, the TensorRT
runner's ``segment_times`` and ``mesc bench``. Every clock returns milliseconds and has
``start() -> token`` and ``stop(token) -> ms``:

* :class:`HostClock`: ``time.perf_counter``, with an optional ``sync`` (a stream synchronise)
  at both ends so that queued device work neither leaks into nor out of the interval;
* :class:`CudaEventClock`: CUDA events recorded on a stream: the device time of the work
  queued between ``start`` and ``stop``, without waiting at ``start``.

Enqueueing on a GPU returns before the work has run, so a host clock without ``sync`` around
a segment's ``run`` sees the enqueue only; :class:`SegmentEvents` brackets each segment with a
reusable event pair on the runner's stream and reads the device times afterwards.
"""

from __future__ import annotations

import time

from mesc.runtime import cuda
from mesc.runtime.errors import DeviceError


def now() -> float:
    """A monotonic host timestamp for :func:`ms_since`."""
    return time.perf_counter()


def ms_since(t0: float) -> float:
    """Host milliseconds since ``t0`` (from :func:`now`)."""
    return (time.perf_counter() - t0) * 1e3


class HostClock:
    """``time.perf_counter`` with an optional ``sync`` (e.g. a stream synchronise) at both ends."""

    name = "host"

    def __init__(self, sync=None):
        self.sync = sync

    def start(self):
        if self.sync:
            self.sync()
        return now()

    def stop(self, token) -> float:
        if self.sync:
            self.sync()
        return ms_since(token)


class CudaEventClock:
    """CUDA events recorded on a stream (its ``cudaStream_t`` as an int); ``stop`` waits for
    the end event and frees both."""

    name = "cuda-events"

    def __init__(self, stream_ptr: int):
        self.stream = int(stream_ptr)

    def _record(self) -> cuda.Event:
        ev = cuda.Event()
        ev.record(self.stream)
        return ev

    def start(self):
        return self._record()

    def stop(self, token) -> float:
        end = self._record()
        try:
            return end.ms_since(token)
        finally:
            token.free()
            end.free()


def segment_clock(runner):
    """The clock for a runner's segments: CUDA events on its stream where it has one on a CUDA
    device (TensorRT); else the host clock, synchronising that stream if any. ONNX Runtime
    synchronises its own runs on CUDA."""
    stream = getattr(runner, "stream", None)
    if stream is not None and getattr(runner.device, "is_cuda", False):
        try:
            cuda.runtime()
        except DeviceError:  # no CUDA runtime to record events with
            return HostClock(stream.synchronize)
        return CudaEventClock(int(stream.ptr))
    return HostClock()


class SegmentEvents:
    """A start/end CUDA event pair per segment, recorded on a runner's stream around the
    segment's latest run; the pairs are made once and reused across runs."""

    def __init__(self):
        self.pairs: dict = {}
        self.pending: list = []

    def record(self, name: str, end: bool, stream_ptr: int) -> None:
        if name not in self.pairs:
            self.pairs[name] = (cuda.Event(), cuda.Event())
        if not end and name not in self.pending:
            self.pending.append(name)
        self.pairs[name][end].record(stream_ptr)

    def elapsed(self) -> dict:
        """Device milliseconds of each segment run since the last read (waits for them)."""
        out = {}
        for name in self.pending:
            start, end = self.pairs[name]
            out[name] = end.ms_since(start)
        self.pending = []
        return out

    def close(self) -> None:
        # teardown goes on past a failed destroy, so that the runner still frees its memory
        for pair in self.pairs.values():
            for ev in pair:
                try:
                    ev.free()
                except DeviceError:
                    pass
        self.pairs, self.pending = {}, []
