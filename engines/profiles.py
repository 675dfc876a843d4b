"""Optimisation-profile shapes: the batch sizes a package's engines accept.

Pure data, tested on CPU; :mod:`mesc.runtime.backends.trt.compat` turns it into polygraphy
``Profile`` objects. Without a profile polygraphy fills every dynamic dimension with 1
(min = opt = max), and a dynamic-batch package would get engines that take batch 1 only.
"""

from __future__ import annotations

from mesc.errors import MescError
from mesc.package.schema import Input, Segment


def batch_range(pkg_input: Input, target, max_batch: int | None = None, dla: bool = False) -> tuple | None:
    """(min, opt, max) batch of the engines, or None where the package's shapes are static.

    A dynamic-batch package gets 1..``max_batch`` (default: the target's ``max_batch``), tuned
    for the largest batch; DLA runs static shapes only, so there the batch is fixed
    (``max_batch``, default 1).
    """
    if max_batch is not None and max_batch < 1:
        raise MescError(f"--max-batch {max_batch}: expected a batch size of 1 or more")
    if not pkg_input.dynamic_batch:
        if max_batch is not None:
            raise MescError(f"--max-batch: the package has a static batch of {pkg_input.shape[0]} (exported "
                            f"without --dynamic-batch), so its engines take that batch only; re-export with "
                            f"--dynamic-batch to choose a batch range, or drop --max-batch")
        return None
    if dla:
        return (max_batch or 1,) * 3
    top = max_batch or target.max_batch
    return (1, top, top)


def segment_shapes(segment: Segment, batches: tuple | None) -> dict[str, tuple[list, list, list]]:
    """Input name -> (min, opt, max) shape for each input of ``segment`` with a dynamic batch."""
    if batches is None:
        return {}
    out = {}
    for t in segment.inputs:
        dims = list(t.shape)
        if all(isinstance(d, int) for d in dims):
            continue
        if not all(isinstance(d, int) for d in dims[1:]):
            raise MescError(f"segment '{segment.name}': input '{t.name}' has shape {dims}; only the first "
                            f"(batch) dimension may be dynamic")
        out[t.name] = tuple([b, *dims[1:]] for b in batches)
    return out
