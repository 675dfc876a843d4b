"""Convolutional building blocks shared by the backbones and the exit heads.

Every block is written for torch.fx: no data-dependent branches, no in-place ops
(ReLU(inplace=False), ``out = out + identity``), so the exporter can trace and split it.
"""

from __future__ import annotations

import torch.nn as nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet convention), never dropping
    more than 10% of the requested width."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """conv-BN-activation with 'same' padding for odd kernels (dilation included)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1, groups=1,
                 act: type[nn.Module] | None = nn.ReLU):
        padding = (kernel_size - 1) // 2 * dilation
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if act is not None:
            layers.append(act(inplace=False))
        super().__init__(*layers)
        self.out_channels = out_channels


def ConvBNReLU(in_channels, out_channels, kernel_size=3, stride=1, dilation=1, groups=1):
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, dilation, groups, act=nn.ReLU)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), with dilation for output-stride-8 nets."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, dilation=1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = ConvBNReLU(in_channels, width, 1)
        self.conv2 = ConvBNReLU(width, width, 3, stride=stride, dilation=dilation)
        self.conv3 = ConvBNAct(width, out_channels, 1, act=None)
        self.downsample = (ConvBNAct(in_channels, out_channels, 1, stride=stride, act=None)
                           if stride != 1 or in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU(inplace=False)
        self.out_channels = out_channels

    def forward(self, x):
        identity = self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs): HRNet's branch unit."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, out_channels, 3, stride=stride)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, act=None)
        self.downsample = (ConvBNAct(in_channels, out_channels, 1, stride=stride, act=None)
                           if stride != 1 or in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU(inplace=False)
        self.out_channels = out_channels

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.downsample(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (strided or dilated), linear 1x1 project."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio, dilation=1):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        # Static flag, decided at construction: fx sees either the residual add or not.
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden, act=nn.ReLU6),
            ConvBNAct(hidden, out_channels, 1, act=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x):
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)
