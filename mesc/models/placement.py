"""Exit placement: candidate exits at about equal shares of the backbone's FLOPs (MESS).

Blocks are profiled once with torch's own FLOP counter, at the default input shape scaled down
by a power of two while both sides stay multiples of 32 and the short side at least 64 (512x1024
-> 32x64): every backbone here divides its input by at most 32, so each conv's FLOPs scale
exactly with H*W and the shares are the same as at full size, for a fraction of the time (meta
tensors would need no arithmetic, but their Python decompositions are slower than the real
thing at 32x64). The same pass records each block's output channels and output stride, which
the exit heads need.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from mesc.errors import ModelLoadError


@dataclass(frozen=True)
class BlockProfile:
    flops: int
    channels: int | tuple[int, ...]   # a tuple for blocks that output parallel branches
    output_stride: int                 # of the first (highest-resolution) output
    dilation: int = 1                  # of the backbone's spatial convs at the block's output


def conv_dilation(block: nn.Module, current: int = 1) -> int:
    """The dilation a backbone convolves at after ``block``: that of its last spatial (k > 1)
    convolution, or ``current`` for a block without one (attention, pooling)."""
    found = current
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1:
            found = int(max(m.dilation))
    return found


def _describe(out, input_height: int):
    if isinstance(out, (list, tuple)):
        channels = tuple(int(t.shape[1]) for t in out)
        height = int(out[0].shape[-2])
    else:
        channels = int(out.shape[1])
        height = int(out.shape[-2])
    return channels, max(1, round(input_height / height))


def profiling_shape(input_shape: Sequence[int], min_side: int = 32, multiple: int = 32) -> tuple[int, ...]:
    n, c, h, w = input_shape
    scale = 1
    while (min(h, w) // (scale * 2) >= min_side and h % (scale * 2 * multiple) == 0
           and w % (scale * 2 * multiple) == 0):
        scale *= 2
    return (1, c, h // scale, w // scale), scale


def profile_blocks(blocks: Sequence[nn.Module], input_shape: Sequence[int],
                   area_scaled: bool = True) -> list[BlockProfile]:
    """FLOPs at ``input_shape`` (multiply-add = 2), output channels, output stride and conv
    dilation (:func:`conv_dilation`) of each block, run in order.

    ``area_scaled=False`` profiles at ``input_shape`` itself (batch 1) on meta copies of the
    blocks: for blocks whose FLOPs grow faster than H*W, such as attention over all tokens
    (N x N/sr^2 scores), where the scaled-down shape would misjudge the shares. At full size
    meta tensors beat real arithmetic.
    """
    if area_scaled:
        shape, scale = profiling_shape(input_shape)
        device = "cpu"
    else:
        shape, scale, device = (1, *input_shape[1:]), 1, "meta"
        blocks = [copy.deepcopy(b).to(device) for b in blocks]
    modules = list(nn.ModuleList(blocks).modules())
    training = [m.training for m in modules]
    feat = torch.zeros(shape, device=device)
    profiles = []
    dilation = 1
    try:
        # eval: a profiling pass must not move BatchNorm running statistics.
        nn.ModuleList(blocks).eval()
        with torch.no_grad():
            for block in blocks:
                with FlopCounterMode(display=False) as counter:
                    feat = block(feat)
                channels, stride = _describe(feat, shape[-2])
                flops = int(counter.get_total_flops()) * scale * scale * input_shape[0]
                dilation = conv_dilation(block, dilation)
                profiles.append(BlockProfile(flops, channels, stride, dilation))
    finally:
        for m, t in zip(modules, training):
            m.training = t
    return profiles


def cumulative_shares(flops: Sequence[int]) -> list[float]:
    """Share of the total FLOPs done once block i (inclusive) has run."""
    total = float(sum(flops)) or 1.0
    shares, acc = [], 0
    for f in flops:
        acc += f
        shares.append(acc / total)
    return shares


def choose_exit_points(flops: Sequence[int], num_exits: int, first_block: int = 0) -> list[int]:
    """Block indices after which the exits go: exit k (1-based) after the block boundary whose
    cumulative FLOP share is closest to k / num_exits; the last exit after the last block.

    Points are strictly increasing; when two targets would pick the same boundary the later one
    moves to the next free boundary. Boundaries before ``first_block`` are not candidates (e.g. an
    exit right after the stem is useless).
    """
    n = len(flops)
    candidates = list(range(first_block, n - 1))
    if num_exits < 1:
        raise ModelLoadError(f"num_exits must be >= 1, got {num_exits}")
    if num_exits - 1 > len(candidates):
        raise ModelLoadError(f"{num_exits} exits asked for, but the backbone has only "
                             f"{len(candidates) + 1} usable block boundaries")
    shares = cumulative_shares(flops)
    points: list[int] = []
    for k in range(1, num_exits):
        target = k / num_exits
        lo = points[-1] + 1 if points else first_block
        hi = n - 1 - (num_exits - k)   # leave a boundary for every later intermediate exit
        best = min(range(lo, hi + 1), key=lambda i: (abs(shares[i] - target), i))
        points.append(best)
    points.append(n - 1)
    return points


def validate_exit_points(points: Sequence[int], num_blocks: int) -> list[int]:
    points = [int(p) for p in points]
    if points and points[-1] == num_blocks - 1:
        points = points[:-1]   # the final exit is implicit; accept it being listed
    if any(b <= a for a, b in zip(points, points[1:])) or any(p < 0 or p >= num_blocks - 1 for p in points):
        raise ModelLoadError(f"exit_points must be strictly increasing block indices in "
                             f"[0, {num_blocks - 2}] (the final exit follows block {num_blocks - 1}), "
                             f"got {list(points)}")
    return points + [num_blocks - 1]
