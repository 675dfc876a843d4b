"""FLOPs of a module at given inputs, with torch's own counter (so shares match the model)."""

from __future__ import annotations

from mesc.lazy import require


def count(module, args) -> int:
    torch = require("torch")
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args)
    return int(counter.get_total_flops())
