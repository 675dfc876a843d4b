"""The MESS exit space: what sits between a backbone feature map and an exit's logits.

An exit is ``[1x1 channel reduction] -> [0..3 extra 3x3 blocks] -> FCN | DeepLabV3 head ->
bilinear upsampling to the input size``. The upsampling is always the last op and always
``F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)`` with ``x`` the
network input: the exporter reads an exit's output stride off the tensor fed to that call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mesc.errors import ModelLoadError
from mesc.models.blocks import ConvBNReLU

HEAD_TYPES = ("fcn", "deeplab")
REDUCTIONS = (1, 2, 4, 8)
# DeepLabV3's ASPP rates are quoted for output stride 16; they scale inversely with the stride.
ASPP_RATES_OS16 = (6, 12, 18)


@dataclass(frozen=True)
class ExitConfig:
    """One point of the MESS exit-architecture space.

    reduction: divide the incoming channels by 1, 2, 4 or 8 with a 1x1 conv-BN-ReLU (1: no conv).
        The default 4 keeps an exit on a 2048-channel OS8 map at ~1/6 of the backbone's FLOPs.
    extra_blocks: 0..3 trainable 3x3 conv-BN-ReLU blocks before the head.
    rapid_dilation: the extra blocks double the dilation already in use at the exit point, block
        by block (1 -> 2, 4, 8 on an undilated stage; 4 -> 8, 16, 32 on a dilated ResNet's last
        stage) instead of using dilation 1 (a wider receptive field for shallow exits at no FLOP
        cost).
    head: "fcn" (3x3 conv-BN-ReLU, 1x1 classifier) or "deeplab" (ASPP + image pooling).
    """

    reduction: int = 4
    extra_blocks: int = 1
    rapid_dilation: bool = False
    head: str = "fcn"

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ModelLoadError(f"ExitConfig.reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.extra_blocks not in (0, 1, 2, 3):
            raise ModelLoadError(f"ExitConfig.extra_blocks must be 0..3, got {self.extra_blocks!r}")
        if self.head not in HEAD_TYPES:
            raise ModelLoadError(f"ExitConfig.head must be one of {HEAD_TYPES}, got {self.head!r}")

    @classmethod
    def coerce(cls, value: Any) -> "ExitConfig":
        """Accept an ExitConfig or a dict of its fields (as parsed from JSON/CLI)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ModelLoadError(f"unknown ExitConfig fields {sorted(unknown)}; "
                                     f"expected {sorted(cls.__dataclass_fields__)}")
            return cls(**value)
        raise ModelLoadError(f"expected an ExitConfig or a dict, got {type(value).__name__}")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_exit_configs(exits, num_intermediate: int, final_exit, default_final: ExitConfig
                         ) -> list[ExitConfig]:
    """Expand the user's ``exits`` argument into one config per exit, final exit last.

    ``exits`` is None (defaults), one config for every intermediate exit, or a list of
    ``num_intermediate`` configs (or ``num_intermediate + 1``: then the last one is the final
    exit's, unless ``final_exit`` is given too).
    """
    if exits is None:
        inter = [ExitConfig()] * num_intermediate
    elif isinstance(exits, (ExitConfig, dict)):
        inter = [ExitConfig.coerce(exits)] * num_intermediate
    else:
        exits = [ExitConfig.coerce(e) for e in exits]
        if len(exits) == num_intermediate + 1:
            if final_exit is None:
                final_exit = exits[-1]
            exits = exits[:-1]
        if len(exits) != num_intermediate:
            raise ModelLoadError(f"got {len(exits)} exit configs for {num_intermediate} intermediate "
                                 f"exits (pass {num_intermediate}, or {num_intermediate + 1} with the final one)")
        inter = exits
    final = default_final if final_exit is None else ExitConfig.coerce(final_exit)
    return list(inter) + [final]


def extra_block_dilations(config: ExitConfig, dilation: int = 1) -> tuple[int, ...]:
    """Dilation of each extra block of an exit attached where the backbone convolves at
    ``dilation``: MESS's rapid dilation increase doubles it from there, block by block."""
    if config.rapid_dilation:
        return tuple(dilation * 2 ** (k + 1) for k in range(config.extra_blocks))
    return (1,) * config.extra_blocks


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    return tuple(max(1, r * 16 // output_stride) for r in ASPP_RATES_OS16)


class FCNHead(nn.Sequential):
    def __init__(self, in_channels, num_classes, channels=None):
        # torchvision's FCNHead uses in/4; the floor keeps tiny test widths from collapsing.
        channels = channels or max(in_channels // 4, min(in_channels, 32))
        super().__init__(ConvBNReLU(in_channels, channels, 3), nn.Conv2d(channels, num_classes, 1))


class ASPPPooling(nn.Module):
    """Image-level pooling branch: global average, 1x1 conv, broadcast back by upsampling."""

    def __init__(self, in_channels, channels):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvBNReLU(in_channels, channels, 1)

    def forward(self, feat):
        y = self.conv(self.pool(feat))
        return F.interpolate(y, size=feat.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, in_channels, channels, rates: Sequence[int]):
        super().__init__()
        branches = [ConvBNReLU(in_channels, channels, 1)]
        branches += [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = ConvBNReLU(channels * len(branches), channels, 1)

    def forward(self, feat):
        return self.project(torch.cat([b(feat) for b in self.branches], dim=1))


class DeepLabHead(nn.Sequential):
    """DeepLabV3 head as in torchvision: ASPP, 3x3 conv-BN-ReLU, 1x1 classifier."""

    def __init__(self, in_channels, num_classes, output_stride, channels=None):
        channels = channels or min(256, max(in_channels, 16))
        super().__init__(ASPP(in_channels, channels, aspp_rates(output_stride)),
                         ConvBNReLU(channels, channels, 3),
                         nn.Conv2d(channels, num_classes, 1))


class ExitHead(nn.Module):
    """One exit: reduction, extra blocks, FCN/DeepLab head, upsampling to the input size.

    ``dilation``: the dilation of the backbone's convolutions where the exit is attached (see
    :func:`mesc.models.placement.profile_blocks`); the extra blocks start from it."""

    def __init__(self, in_channels: int, num_classes: int, config: ExitConfig, output_stride: int,
                 head_channels: int | None = None, dilation: int = 1):
        super().__init__()
        self.config = config
        self.output_stride = output_stride
        self.dilation = dilation
        layers = []
        c = in_channels
        if config.reduction > 1:
            # Never reduce below 8 channels (unless there were fewer to begin with).
            reduced = max(c // config.reduction, min(c, 8))
            layers.append(ConvBNReLU(c, reduced, 1))
            c = reduced
        for d in extra_block_dilations(config, dilation):
            layers.append(ConvBNReLU(c, c, 3, dilation=d))
        self.pre = nn.Sequential(*layers)
        if config.head == "fcn":
            self.head = FCNHead(c, num_classes, head_channels)
        else:
            self.head = DeepLabHead(c, num_classes, output_stride, head_channels)

    def forward(self, feat, x):
        logits = self.head(self.pre(feat))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class BranchConcatExit(nn.Module):
    """Exit on a list of parallel-branch tensors (HRNet): upsample every branch to the first
    (highest-resolution) branch, concatenate, then an ExitHead. It consumes every branch, so a
    split after this point carries all of them across the cut."""

    def __init__(self, branch_channels: Sequence[int], num_classes: int, config: ExitConfig,
                 output_stride: int, head_channels: int | None = None, dilation: int = 1):
        super().__init__()
        self.num_branches = len(branch_channels)
        self.exit = ExitHead(sum(branch_channels), num_classes, config, output_stride, head_channels, dilation)
        self.config = config
        self.output_stride = output_stride

    def forward(self, feats, x):
        size = feats[0].shape[-2:]
        parts = [feats[0]]
        for i in range(1, self.num_branches):
            parts.append(F.interpolate(feats[i], size=size, mode="bilinear", align_corners=False))
        feat = parts[0] if self.num_branches == 1 else torch.cat(parts, dim=1)
        return self.exit(feat, x)


class CandidateExits(nn.ModuleList):
    """Several candidate heads on one exit point (MESS exit-architecture search): ``forward``
    returns their logits as a list, in order. Keys: ``<point module>.<j>.``."""

    def __init__(self, heads: Sequence[nn.Module]):
        if len(heads) < 1:
            raise ModelLoadError("an exit point needs at least one candidate head")
        super().__init__(heads)
        self.configs = tuple(h.config for h in heads)
        self.output_stride = heads[0].output_stride

    def forward(self, feat, x):
        return [head(feat, x) for head in self]
