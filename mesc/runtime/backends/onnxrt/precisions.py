"""The prepared precisions: which graph each segment runs for ``--precision`` (on ONNX Runtime,
and the graphs ``mesc build`` builds TensorRT engines from).

``mesc prepare`` writes FP16 and INT8 (Q/DQ) graphs of the same I/O as the FP32 segments and
lists them under the manifest's ``precisions``; ONNX Runtime runs them as they are (on CUDA, FP16
is how a machine without TensorRT gets half precision).
"""

from __future__ import annotations

from mesc.runtime.errors import BackendError

PRECISIONS = ("fp32", "fp16", "int8")


def prepare_command(pkg, precision: str) -> str:
    """The ``mesc prepare`` call that writes ``precision``'s graphs (INT8 needs images)."""
    hint = " --calib-data IMAGES" if precision == "int8" else ""
    return f"mesc prepare {pkg.root} --precision {precision}{hint}"


def prepared_segments(pkg, precision: str, error=BackendError) -> dict | None:
    """segment name -> package-relative file of its ``precision`` graph from the manifest's
    ``precisions``; None where that precision was never prepared. A list that lacks a segment
    raises ``error``: the package was re-exported or its preparation cut short."""
    entry = pkg.precisions.get(precision)
    if entry is None:
        return None
    missing = [s.name for s in pkg.segments if s.name not in entry.segments]
    if missing:
        raise error(f"{pkg.root}: the prepared {precision} graphs lack segments {missing}; "
                    f"run '{prepare_command(pkg, precision)}' again")
    return dict(entry.segments)


def prepared_graphs(pkg, precision: str | None) -> dict | None:
    """segment name -> path of its ``precision`` graph; None for FP32 (the package's own)."""
    if precision in (None, "fp32"):
        return None
    if precision not in PRECISIONS:
        raise BackendError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    segments = prepared_segments(pkg, precision)
    if segments is None:
        raise BackendError(f"{pkg.root} has no prepared {precision} graphs; run '{prepare_command(pkg, precision)}' first")
    return {name: pkg.path(rel) for name, rel in segments.items()}
