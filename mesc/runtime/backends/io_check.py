"""A segment's graph or engine against what the manifest says it takes and gives.

Checked once, when a backend first opens a segment, from what the session or engine reports
(no file is parsed again). A graph that disagrees with its manifest entry would otherwise fail
at the first call in the backend's own words ("failed to find input name", "Got: 128
Expected: 256"), or run with a tensor the pipeline did not plan for.
"""

from __future__ import annotations

from mesc.package.schema import Segment


def io_mismatch(segment: Segment, inputs: list, outputs: list, what: str = "the graph") -> str | None:
    """The first difference between ``segment`` (a manifest entry) and the I/O a backend reports,
    as "<input|output> '<name>': manifest says ..., <what> gives ...", or None.

    ``inputs`` and ``outputs`` are ``(name, dtype, shape)`` rows: the dtype as numpy names it,
    the shape a list of ints with None for a dynamic dimension (the whole shape None where the
    backend does not know it). A dimension the manifest fixes may be dynamic in the graph (it
    accepts more). Of the dimensions the manifest names, only the batch (dim 0) must stay
    dynamic: the runtime shrinks the batch as images exit, while a named inner dimension is
    one the exporter's shape inference did not fold and the graph or engine may know.
    """
    for role, declared, actual in (("input", segment.inputs, inputs), ("output", segment.outputs, outputs)):
        got = {name: (dtype, shape) for name, dtype, shape in actual}
        for spec in declared:
            name, want = spec.name, list(spec.shape)
            where = f"{role} '{name}'"
            if name not in got:
                return f"{where}: the manifest lists it, {what} has no such {role} (it has {sorted(got)})"
            dtype, shape = got[name]
            if dtype != spec.dtype:
                return f"{where}: manifest says dtype {spec.dtype}, {what} gives {dtype}"
            if shape is None:
                continue
            if len(shape) != len(want):
                return f"{where}: manifest says rank {len(want)} {want}, {what} gives rank {len(shape)} {list(shape)}"
            for i, (w, h) in enumerate(zip(want, shape)):
                if h is None or (isinstance(w, str) and i > 0):
                    continue
                if isinstance(w, str):
                    return f"{where}: manifest says dim {i} is dynamic ({w!r}), {what} fixes it at {h}"
                if w != h:
                    return f"{where}: manifest says shape {want}, {what} gives {list(shape)} (dim {i})"
        extra = sorted(set(got) - {spec.name for spec in declared})
        if extra:
            return f"{role} '{extra[0]}': {what} has it, the manifest does not list it"
    return None
