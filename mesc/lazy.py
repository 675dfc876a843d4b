"""Lazy imports of the heavy optional packages (torch, tensorrt, onnxruntime-gpu, ...).

``import mesc`` and the runtime must never pull in torch or tensorrt, so modules that need
them call :func:`require` at the point of use; a missing package becomes an error that names
the extra to install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib

from mesc.errors import MissingDependencyError

# module -> extra that provides it
EXTRAS = {
    "torch": "export",
    "tensorrt": "trt",
    "polygraphy": "trt",
    "cuda": "trt",
    "onnxruntime": "core",
    "matplotlib": "plot",
    "scipy": "data",
    "pycocotools": "data",
    "hypothesis": "dev",
    "pytriton": "serve",
    "tritonclient": "serve",
    "av": "video",
}
# what else the error says, per module: torch is for the workstation side only
NOTES = {
    "torch": "export and training are tested on Python 3.10 and later; a device (Python 3.8 and up) "
             "needs only the exported package",
}


def require(module: str, extra: str | None = None, purpose: str | None = None):
    """Import and return ``module``, or raise an error naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = extra or EXTRAS.get(top, top)
        what = f" for {purpose}" if purpose else ""
        hint = "pip install mesc" if extra == "core" else f"pip install 'mesc[{extra}]'"
        note = f" ({NOTES[top]})" if top in NOTES else ""
        raise MissingDependencyError(
            f"{top} is needed{what} but is not installed ({err}); install it with: {hint}{note}"
        ) from err
