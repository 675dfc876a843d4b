"""mesc: compile multi-exit semantic segmentation networks for the edge.

The top-level package is light on purpose: it imports neither torch nor tensorrt. Heavy
parts (export, engine building) are imported where they are used.
"""

__version__ = "0.1.0"

from mesc.errors import MescError, PackageError  # noqa: E402


def load(path, **kwargs):
    """Load a mesc package as a runnable early-exit pipeline (see :mod:`mesc.runtime`)."""
    from mesc.runtime import load as _load

    return _load(path, **kwargs)


def open_package(path):
    """Open and validate a mesc package directory (manifest and checksums)."""
    from mesc.package import Package

    return Package.load(path)


__all__ = ["__version__", "MescError", "PackageError", "load", "open_package"]
