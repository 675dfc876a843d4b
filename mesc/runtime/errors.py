"""User-facing runtime errors; all derive from :class:`mesc.errors.MescError`, so the CLI prints
them as one line without a traceback."""

from __future__ import annotations

from mesc.errors import MescError, MissingDependencyError  # noqa: F401  (re-exported)


class InputError(MescError):
    """An image or batch has the wrong shape, dtype or channel count, or cannot be read."""


class BackendError(MescError):
    """The backend cannot run this package as asked (unknown name, missing engine, bad option)."""


class DeviceError(MescError):
    """The device named does not exist or cannot be used by the chosen backend."""


class EngineMismatchError(BackendError):
    """A TensorRT plan was built for another GPU, compute capability or TensorRT version."""
