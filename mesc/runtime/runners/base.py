"""The interface every backend implements, shaped like polygraphy's runners.

A runner owns the compiled segments of one package on one device. The pipeline drives it
with opaque *handles* (tensors that stay where the backend keeps them: an ``OrtValue``, a
device buffer) and decides alone what crosses to the host, so the copy logic is one piece of
code for every backend and device; CPU tests therefore cover the CUDA paths' decisions.
"""

from __future__ import annotations

import abc

import numpy as np


class Runner(abc.ABC):
    """activate() / run segments / deactivate(); also a context manager."""

    backend = "?"

    def __init__(self, pkg, device):
        self.pkg = pkg
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
        """Load the segments (sessions, engines) and allocate what is reused between calls."""

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Release sessions, contexts and device memory."""

    @abc.abstractmethod
    def upload(self, array: np.ndarray):
        """Host array -> handle on the runner's device."""

    @abc.abstractmethod
    def run(self, segment: dict, feeds: dict, outputs: list[str]) -> dict:
        """Run one segment (a manifest entry) on handles; return handles of ``outputs`` only,
        left on the device."""

    @abc.abstractmethod
    def download(self, handle) -> np.ndarray:
        """Handle -> host array (the only device-to-host copy the pipeline makes)."""

    @abc.abstractmethod
    def take(self, handle, rows: np.ndarray):
        """Batch rows ``rows`` (sorted int64 indices) of a handle, gathered on the device."""

    @abc.abstractmethod
    def shape(self, handle) -> tuple:
        """The handle's shape, without touching its data."""

    def segment_times(self) -> dict[str, float] | None:
        """Device-side milliseconds per segment of the last call, where the backend measures
        them (None: the pipeline's wall-clock times stand)."""
        return None
