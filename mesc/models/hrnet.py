"""HRNet-W18 (HRNetV2, the thesis' multi-exit backbone) with MESS exits.

Blocks pass a *list* of branch tensors (highest resolution first) from the stem on, so an exit
can sit after any block; each exit upsamples every live branch to 1/4 and concatenates them
(HRNetV2's segmentation representation), so a cut after stage 2, 3 or 4 carries 2, 3 or 4
tensors.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F

from mesc.errors import ModelLoadError
from mesc.models.blocks import BasicBlock, Bottleneck, ConvBNAct, ConvBNReLU
from mesc.models.heads import ExitConfig
from mesc.models.multiexit import DEFAULT_INPUT_SHAPE, build_multi_exit
from mesc.models.registry import finish, register


class HRStem(nn.Module):
    """Two stride-2 3x3 convs to 1/4; returns a one-branch list."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(3, channels, 3, stride=2), ConvBNReLU(channels, channels, 3, stride=2))

    def forward(self, x):
        return [self.conv(x)]


class OnFirstBranch(nn.Module):
    """Stage 1 runs on a single branch; wrapping each bottleneck keeps the list interface so
    exits may sit between any two of them."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, xs):
        return [self.block(xs[0])]


class Transition(nn.Module):
    """Adapt the existing branches' channels and spawn a new, half-resolution branch."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]):
        super().__init__()
        self.num_in = len(in_channels)
        self.adapt = nn.ModuleList(
            nn.Identity() if cin == cout else ConvBNReLU(cin, cout, 3)
            for cin, cout in zip(in_channels, out_channels))
        self.spawn = nn.ModuleList(
            ConvBNReLU(in_channels[-1], cout, 3, stride=2) for cout in out_channels[self.num_in:])

    def forward(self, xs):
        outs = [adapt(x) for adapt, x in zip(self.adapt, xs)]
        for spawn in self.spawn:
            outs.append(spawn(xs[-1]))
        return outs


class HRModule(nn.Module):
    """Parallel branches of basic blocks, then every branch fuses every other one (upsampled
    by 1x1 conv + bilinear resize, or downsampled by stride-2 3x3 convs)."""

    def __init__(self, channels: Sequence[int], num_blocks: int):
        super().__init__()
        n = self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels)
        fuse = []
        for i in range(n):
            row = []
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(ConvBNAct(channels[j], channels[i], 1, act=None))
                else:
                    steps = [ConvBNReLU(channels[j], channels[j], 3, stride=2) for _ in range(i - j - 1)]
                    steps.append(ConvBNAct(channels[j], channels[i], 3, stride=2, act=None))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outs = []
        for i in range(self.num_branches):
            y = xs[i]
            for j in range(self.num_branches):
                if j == i:
                    continue
                z = self.fuse[i][j](xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            outs.append(self.relu(y))
        return outs


def hrnet_blocks(width: int = 18, stem_width: int = 64, stage1_blocks: int = 4,
                 modules: Sequence[int] = (1, 4, 3), branch_blocks: int = 4) -> list[nn.Module]:
    out: list[nn.Module] = [HRStem(stem_width)]
    in_ch = stem_width
    for _ in range(stage1_blocks):
        block = Bottleneck(in_ch, stem_width)
        out.append(OnFirstBranch(block))
        in_ch = block.out_channels
    prev = [in_ch]
    for stage, n_modules in enumerate(modules, start=2):
        channels = [width * 2 ** b for b in range(stage)]
        for m in range(n_modules):
            module = HRModule(channels, branch_blocks)
            # The transition joins the stage's first module: an exit between them is pointless.
            out.append(nn.Sequential(Transition(prev, channels), module) if m == 0 else module)
        prev = channels
    return out


@register("hrnet18", "HRNetV2-W18 (4 parallel-branch stages, OS4) with FCN-style exits on concatenated branches")
def hrnet18(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
            final_exit=None, width: int = 18, stem_width: int = 64, stage1_blocks: int = 4,
            modules: Sequence[int] = (1, 4, 3), branch_blocks: int = 4, head_channels: int | None = None,
            checkpoint=None):
    """Exits default to the end of stages 1..4 (the thesis' placement, ``exit_points="stages"``);
    give ``num_exits`` to place them at equal FLOP shares like the other backbones instead."""
    blocks = hrnet_blocks(width, stem_width, stage1_blocks, modules, branch_blocks)
    if exit_points is None and num_exits is None:
        exit_points = "stages"
    if isinstance(exit_points, str):
        if exit_points != "stages":
            raise ModelLoadError(f"exit_points must be a list of block indices or 'stages', got {exit_points!r}")
        ends = [stage1_blocks]
        for n in modules:
            ends.append(ends[-1] + n)
        exit_points = ends
    model = build_multi_exit(
        blocks, num_classes=num_classes, num_exits=num_exits, exit_points=exit_points, exits=exits,
        final_exit=final_exit, default_final=ExitConfig(reduction=1, extra_blocks=0, head="fcn"),
        default_num_exits=4, default_input_shape=DEFAULT_INPUT_SHAPE, final_head_channels=head_channels)
    return finish(model, checkpoint)
