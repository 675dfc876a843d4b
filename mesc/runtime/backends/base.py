"""What every backend is made of, shaped like polygraphy's backends: a loader and a runner.

A *loader* is a deferred load: constructing it checks what can be checked cheaply (so a wrong
request fails at ``mesc.load`` before anything heavy happens) and calling it makes the thing
(sessions, engines). Loaders chain: one takes another, or what it made, as its source.

A *runner* is handed what a loader makes and only activates, runs segments, deactivates and
moves tensors; it calls its loader on ``activate``. The pipeline drives it
with opaque *handles* (tensors that stay where the backend keeps them: an ``OrtValue``, a
device buffer) and decides alone what crosses to the host, so the copy logic is one piece of
code for every backend and device; CPU tests therefore cover the CUDA paths' decisions.
"""

from __future__ import annotations

import abc

import numpy as np


class Loader(abc.ABC):
    """``loader()`` makes the thing; ``call_impl`` says how."""

    def __call__(self):
        return self.call_impl()

    @abc.abstractmethod
    def call_impl(self):
        """Make what this loader stands for."""


def invoke_if_callable(source):
    """What a loader makes, or ``source`` itself when it was made already."""
    return source() if callable(source) else source


class Runner(abc.ABC):
    """activate() / run segments / deactivate(); also a context manager."""

    backend = "?"
    # what the segments run at: "fp32" ONNX, the prepared graphs' or the engines' precision
    # (make_runner sets it; calibration reports record it)
    precision = "fp32"
    # device-side timing of each segment (CUDA events) wanted for the next runs; off, it costs nothing
    timing = False
    # how segments are launched: "off" (one run at a time), "cuda-graphs" (captured and replayed)
    graph_mode = "off"
    # which set of fixed buffers runs use: walks in flight together (anytime() over the groups of
    # a static batch) each need their own, or one group's segment overwrites another's activations
    lane = 0

    def __init__(self, device):
        self.device = device
        self.is_active = False

    def activate(self) -> "Runner":
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self._deactivate()

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def __repr__(self):
        return f"<{type(self).__name__} {self.backend} on {self.device}>"

    @abc.abstractmethod
    def _activate(self) -> None:
        """Call the loader (sessions, engines) and allocate what is reused between calls."""

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Release sessions, contexts and device memory."""

    @abc.abstractmethod
    def upload(self, array: np.ndarray, slot: str = "input"):
        """Host array -> handle on the runner's device. Runners with fixed buffers keep one per
        (``slot``, shape, dtype) and overwrite it in place: a handle is valid until the next
        upload to its slot."""

    @abc.abstractmethod
    def run(self, segment: dict, feeds: dict, outputs: list[str]) -> dict:
        """Run one segment (a manifest entry) on handles; return handles of ``outputs`` only,
        left on the device."""

    @abc.abstractmethod
    def download(self, handle) -> np.ndarray:
        """Handle -> host array (the only device-to-host copy the pipeline makes)."""

    def copy_out(self, handle, rows=None):
        """Rows of ``handle`` left on the device in memory of their own (see
        :mod:`mesc.runtime.device_output`); only runners on a CUDA stream have it."""
        from mesc.runtime.errors import InputError

        raise InputError(f"device_output needs a runner on a CUDA stream (TensorRT, or onnxruntime >= 1.17 with "
                         f"CUDA); this one runs {self.backend} on {self.device}")

    def fetch(self, handle):
        """A read of ``handle`` to the host, queued: ``.get()`` waits for it and returns the
        array. Runners on a CUDA stream queue the copy and wait once for every read queued before
        (:class:`~mesc.runtime.backends.device_reads.StreamReads`); by default it reads at once."""
        from mesc.runtime.backends.device_reads import Ready

        return Ready(self.download(handle))

    @abc.abstractmethod
    def take(self, handle, rows: np.ndarray):
        """Batch rows ``rows`` (sorted int64 indices) of a handle, gathered on the device."""

    @abc.abstractmethod
    def shape(self, handle) -> tuple:
        """The handle's shape, without touching its data."""

    def path(self) -> dict:
        """How this runner moves tensors and launches segments, for reports (``mesc selftest``,
        ``mesc bench``): ``io`` ("direct": a sync per run; "stream": one stream, fixed buffers,
        queued reads), ``cuda_graphs`` (the graph mode) and the segments that fell back."""
        return {"backend": self.backend, "io": getattr(self, "io_path", "direct"), "cuda_graphs": self.graph_mode,
                "graph_fallbacks": dict(getattr(self, "graph_fallbacks", None) or {})}

    def segment_times(self) -> dict[str, float] | None:
        """Device-side milliseconds per segment of the last call, where the backend measures
        them (None: the pipeline's wall-clock times stand)."""
        return None
