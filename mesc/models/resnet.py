"""Dilated ResNet-50 (DRN-50-like, output stride 8) with MESS exits.

Layers 3 and 4 keep stride 1 and dilate their 3x3 convs by 2 and 4 instead (DeepLab's
"replace stride with dilation"; the first block of a dilated layer keeps the previous dilation,
as in torchvision, since its input is still sampled at the previous rate).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from mesc.models.blocks import Bottleneck, ConvBNReLU
from mesc.models.heads import ExitConfig
from mesc.models.multiexit import DEFAULT_INPUT_SHAPE, build_multi_exit
from mesc.models.registry import finish, register


class ResNetStem(nn.Sequential):
    def __init__(self, width):
        super().__init__(ConvBNReLU(3, width, 7, stride=2), nn.MaxPool2d(3, stride=2, padding=1))
        self.out_channels = width


def dilated_resnet_blocks(base_width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3)) -> list[nn.Module]:
    """Stem + one entry per bottleneck: the granularity at which exits can be placed."""
    out = [ResNetStem(base_width)]
    in_ch = base_width
    dilation = 1
    # (width multiplier, stride, dilation) per layer: OS8 -> layers 3, 4 dilate instead of stride.
    for layer, (mult, stride, new_dilation) in enumerate(((1, 1, 1), (2, 2, 1), (4, 1, 2), (8, 1, 4))):
        width = base_width * mult
        for b in range(blocks[layer]):
            d = dilation if b == 0 else new_dilation
            block = Bottleneck(in_ch, width, stride=stride if b == 0 else 1, dilation=d)
            out.append(block)
            in_ch = block.out_channels
        dilation = new_dilation
    return out


def _drn50(head: str, num_classes, num_exits, exit_points, exits, final_exit, base_width, blocks,
           head_channels, checkpoint):
    model = build_multi_exit(
        dilated_resnet_blocks(base_width, blocks), num_classes=num_classes, num_exits=num_exits,
        exit_points=exit_points, exits=exits, final_exit=final_exit,
        default_final=ExitConfig(reduction=1, extra_blocks=0, head=head), default_num_exits=4,
        default_input_shape=DEFAULT_INPUT_SHAPE, final_head_channels=head_channels)
    return finish(model, checkpoint)


@register("drn50-fcn", "Dilated ResNet-50 (OS8) + FCN final head, exits at equal FLOP shares (MESS)")
def drn50_fcn(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
              final_exit=None, base_width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3),
              head_channels: int | None = None, checkpoint=None):
    return _drn50("fcn", num_classes, num_exits, exit_points, exits, final_exit, base_width, blocks,
                  head_channels, checkpoint)


@register("drn50-deeplab", "Dilated ResNet-50 (OS8) + DeepLabV3 final head, exits at equal FLOP shares (MESS)")
def drn50_deeplab(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
                  final_exit=None, base_width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3),
                  head_channels: int | None = None, checkpoint=None):
    return _drn50("deeplab", num_classes, num_exits, exit_points, exits, final_exit, base_width, blocks,
                  head_channels, checkpoint)
