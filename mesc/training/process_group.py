"""Where this process stands in a torchrun process group, for the loop and the losses (the
torchrun entry that sets the group up is :mod:`mesc.training.dist`)."""

from __future__ import annotations

import torch


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun process group, ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
