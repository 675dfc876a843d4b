"""The generic multi-exit network: an ordered list of backbone blocks with exits after some.

The backbone stays a flat ``blocks`` ModuleList whatever the exit placement, so state_dict keys
of the backbone do not depend on where the exits are (a checkpoint of the backbone loads into
any placement; exits live under ``exits.<k>``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn as nn

from mesc.models.heads import BranchConcatExit, CandidateExits, ExitConfig, ExitHead, resolve_exit_configs
from mesc.models.placement import BlockProfile, choose_exit_points, profile_blocks, validate_exit_points

DEFAULT_INPUT_SHAPE = (1, 3, 512, 1024)
IMAGENET_NORMALIZATION = {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class MultiExitSegNet(nn.Module):
    """``forward(x)`` returns a list with one entry per exit point, shallow to deep: the exit's
    logits (N x classes x H x W), or for a point with candidate heads
    (:func:`mesc.models.candidates.with_candidate_heads`) the list of their logits."""

    def __init__(self, blocks: Sequence[nn.Module], exits: Sequence[nn.Module], exit_points: Sequence[int],
                 num_classes: int, default_input_shape=DEFAULT_INPUT_SHAPE, block_flops=None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.exits = nn.ModuleList(exits)
        self.exit_points = tuple(exit_points)
        self._exit_after = {p: k for k, p in enumerate(self.exit_points)}
        self.num_classes = num_classes
        self.default_input_shape = tuple(default_input_shape)
        self.input_normalization = dict(IMAGENET_NORMALIZATION)
        # Per-block FLOPs at default_input_shape, as measured for placement (informational).
        self.block_flops = tuple(block_flops) if block_flops is not None else None

    def _flat(self, attr: str, candidates_attr: str) -> tuple:
        out = []
        for e in self.exits:
            if isinstance(e, CandidateExits):
                out += [getattr(h, attr) for h in e] if candidates_attr is None else list(getattr(e, candidates_attr))
            else:
                out.append(getattr(e, attr))
        return tuple(out)

    @property
    def exit_configs(self) -> tuple:
        """Every head's ExitConfig in flattened order (point by point, candidates in order)."""
        return self._flat("config", "configs")

    @property
    def output_strides(self) -> tuple:
        """Every head's output stride, in flattened order."""
        return self._flat("output_stride", None)

    def forward(self, x):
        feat = x
        outs = []
        # The loop and the membership test run on Python ints: fx unrolls them.
        for i, block in enumerate(self.blocks):
            feat = block(feat)
            if i in self._exit_after:
                outs.append(self.exits[self._exit_after[i]](feat, x))
        return outs


def build_multi_exit(blocks: Sequence[nn.Module], *, num_classes: int, num_exits: int | None,
                     exit_points: Sequence[int] | None, exits, final_exit, default_final: ExitConfig,
                     default_num_exits: int, default_input_shape=DEFAULT_INPUT_SHAPE,
                     head_channels: int | None = None, final_head_channels: int | None = None,
                     first_exit_block: int = 1,
                     net_cls: Callable[..., MultiExitSegNet] = MultiExitSegNet,
                     final_head: Callable[[Sequence[BlockProfile]], nn.Module] | None = None,
                     area_scaled_profile: bool = True) -> MultiExitSegNet:
    """Place exits (by FLOP shares unless ``exit_points`` is given) and attach their heads.

    ``final_head``, given every block's profile, builds the final exit instead of an ExitHead
    (a decoder over several blocks' outputs; ``net_cls`` then feeds it what it needs).
    ``area_scaled_profile``: see :func:`profile_blocks`.
    """
    profiles = profile_blocks(blocks, default_input_shape, area_scaled=area_scaled_profile)
    point_profiles = []
    flops = [p.flops for p in profiles]
    if exit_points is not None:
        points = validate_exit_points(exit_points, len(blocks))
    else:
        if num_exits is None:
            num_exits = (len(exits) + 1) if isinstance(exits, (list, tuple)) else default_num_exits
        points = choose_exit_points(flops, num_exits, first_block=first_exit_block)
    configs = resolve_exit_configs(exits, len(points) - 1, final_exit, default_final)
    heads = []
    for k, (p, cfg) in enumerate(zip(points, configs)):
        if final_head is not None and k == len(points) - 1:
            heads.append(final_head(profiles))
            continue
        hc = final_head_channels if k == len(points) - 1 else head_channels
        heads.append(exit_head(profiles[p], num_classes, cfg, hc))
    net = net_cls(blocks, heads, points, num_classes, default_input_shape, flops)
    # what with_candidate_heads needs to attach more heads at the same points
    net.exit_profiles = tuple(profiles[p] for p in points)
    net.head_channels = head_channels
    return net


def exit_head(profile: BlockProfile, num_classes: int, config: ExitConfig, head_channels: int | None = None
              ) -> nn.Module:
    """The head for ``config`` on a block's output as ``profile`` describes it (channels, stride,
    the dilation the rapid dilation increase starts from)."""
    if isinstance(profile.channels, tuple):
        return BranchConcatExit(profile.channels, num_classes, config, profile.output_stride, head_channels,
                                profile.dilation)
    return ExitHead(profile.channels, num_classes, config, profile.output_stride, head_channels, profile.dilation)
