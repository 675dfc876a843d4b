"""mesc: compile multi-exit semantic segmentation networks for the edge.

The top-level package is light on purpose: it imports neither torch nor tensorrt. Heavy
parts (export, engine building) are imported where they are used.

This file alone has no ``from __future__ import annotations`` (a SyntaxError before 3.7) and no
f-strings: it must parse on the Pythons it turns away, which get one line naming the minimum
instead of a SyntaxError from deeper down (JetPack 4 has Python 3.6).
"""

import sys

if sys.version_info < (3, 8):
    raise ImportError("mesc needs Python 3.8 or newer; this is Python %d.%d (on a Jetson: JetPack 5 or later)"
                      % tuple(sys.version_info[:2]))

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
