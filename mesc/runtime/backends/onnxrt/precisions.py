"""The prepared precisions on ONNX Runtime: which graph each segment runs for ``--precision``.

``mesc prepare`` writes FP16 and INT8 (Q/DQ) graphs of the same I/O as the FP32 segments and
lists them under the manifest's ``precisions``; ONNX Runtime runs them as they are (on CUDA, FP16
is how a machine without TensorRT gets half precision).
"""

from __future__ import annotations

from mesc.runtime.errors import BackendError

PRECISIONS = ("fp32", "fp16", "int8")


def prepared_graphs(pkg, precision: str | None) -> dict | None:
    """segment name -> path of its ``precision`` graph; None for FP32 (the package's own)."""
    if precision in (None, "fp32"):
        return None
    if precision not in PRECISIONS:
        raise BackendError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    entry = pkg.manifest.get("precisions", {}).get(precision)
    hint = " --calib-data IMAGES" if precision == "int8" else ""
    prepare = f"run 'mesc prepare {pkg.root} --precision {precision}{hint}' first"
    if not entry:
        raise BackendError(f"{pkg.root} has no prepared {precision} graphs; {prepare}")
    missing = [s["name"] for s in pkg.segments if s["name"] not in entry["segments"]]
    if missing:
        raise BackendError(f"{pkg.root}: the prepared {precision} graphs lack segments {missing}; {prepare}")
    return {name: pkg.path(rel) for name, rel in entry["segments"].items()}
