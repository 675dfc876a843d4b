"""MobileNetV2 (output stride 8) with MESS exits.

The stages that would take the stride to 16 and 32 keep stride 1 and dilate their depthwise
convs by 2 and 4 (DeepLabV3's MobileNetV2 setting). The final 1x1 conv to 1280 channels is an
ImageNet classifier feature and is dropped, as in DeepLab.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from mesc.models.blocks import ConvBNAct, InvertedResidual, make_divisible
from mesc.models.heads import ExitConfig
from mesc.models.multiexit import DEFAULT_INPUT_SHAPE, build_multi_exit
from mesc.models.registry import finish, register

# (expand ratio t, channels c, stride s) per stage; repeats come from `depth`.
STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))
DEPTH = (1, 2, 3, 4, 3, 3, 1)
OUTPUT_STRIDE = 8


def mobilenetv2_blocks(width_mult: float = 1.0, depth: Sequence[int] = DEPTH,
                       output_stride: int = OUTPUT_STRIDE) -> list[nn.Module]:
    stem_ch = make_divisible(32 * width_mult)
    stem = ConvBNAct(3, stem_ch, 3, stride=2, act=nn.ReLU6)
    out: list[nn.Module] = [stem]
    in_ch, current_stride, dilation = stem_ch, 2, 1
    for (t, c, s), n in zip(STAGES, depth):
        out_ch = make_divisible(c * width_mult)
        prev_dilation = dilation
        if s > 1 and current_stride >= output_stride:
            dilation *= s   # past the target stride: dilate instead of striding
            s = 1
        else:
            current_stride *= s
        for i in range(n):
            block = InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t,
                                     dilation=prev_dilation if i == 0 else dilation)
            out.append(block)
            in_ch = out_ch
    return out


def build_mobilenetv2(head: str, num_classes, num_exits, exit_points, exits, final_exit, width_mult,
                      depth, head_channels, checkpoint, default_num_exits=4,
                      default_input_shape=DEFAULT_INPUT_SHAPE):
    model = build_multi_exit(
        mobilenetv2_blocks(width_mult, depth), num_classes=num_classes, num_exits=num_exits,
        exit_points=exit_points, exits=exits, final_exit=final_exit,
        default_final=ExitConfig(reduction=1, extra_blocks=0, head=head),
        default_num_exits=default_num_exits, default_input_shape=default_input_shape,
        final_head_channels=head_channels)
    return finish(model, checkpoint)


@register("mbv2-fcn", "MobileNetV2 (OS8, dilated) + FCN final head, exits at equal FLOP shares")
def mbv2_fcn(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
             final_exit=None, width_mult: float = 1.0, depth: Sequence[int] = DEPTH,
             head_channels: int | None = None, checkpoint=None):
    return build_mobilenetv2("fcn", num_classes, num_exits, exit_points, exits, final_exit, width_mult,
                             depth, head_channels, checkpoint)


@register("mbv2-deeplab", "MobileNetV2 (OS8, dilated) + DeepLabV3 final head, exits at equal FLOP shares")
def mbv2_deeplab(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
                 final_exit=None, width_mult: float = 1.0, depth: Sequence[int] = DEPTH,
                 head_channels: int | None = None, checkpoint=None):
    return build_mobilenetv2("deeplab", num_classes, num_exits, exit_points, exits, final_exit,
                             width_mult, depth, head_channels, checkpoint)
