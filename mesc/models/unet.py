"""A small U-Net-like multi-exit model: the splitter's test case for skip connections.

    x -> enc1 (1/2) -> enc2 (1/4) -> [exit 1] -> enc3 (1/8) -> [exit 2] -> enc4 (1/16)
                                                                 -> dec3 (+enc3) -> dec2 (+enc2) -> dec1 (+enc1) -> [exit 3]

enc1's output skips OVER exits 1 and 2 into the last decoder stage, so it is live across both
cuts (as are enc2's and enc3's outputs across the cuts after them).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mesc.models.blocks import ConvBNReLU
from mesc.models.heads import ExitConfig, ExitHead, resolve_exit_configs
from mesc.models.multiexit import DEFAULT_INPUT_SHAPE, IMAGENET_NORMALIZATION
from mesc.models.registry import finish, register


def _down(cin, cout):
    return nn.Sequential(ConvBNReLU(cin, cout, 3, stride=2), ConvBNReLU(cout, cout, 3))


class _Up(nn.Module):
    """Resize to the skip's size, concatenate, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(cin + cskip, cout, 3), ConvBNReLU(cout, cout, 3))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNetSkip(nn.Module):
    def __init__(self, num_classes=19, base_width=32, exits=None, final_exit=None):
        super().__init__()
        c = base_width
        self.enc1 = _down(3, c)
        self.enc2 = _down(c, 2 * c)
        self.enc3 = _down(2 * c, 4 * c)
        self.enc4 = _down(4 * c, 8 * c)
        self.dec3 = _Up(8 * c, 4 * c, 4 * c)
        self.dec2 = _Up(4 * c, 2 * c, 2 * c)
        self.dec1 = _Up(2 * c, c, c)
        cfg = resolve_exit_configs(exits, 2, final_exit, ExitConfig(reduction=1, extra_blocks=0, head="fcn"))
        self.exits = nn.ModuleList([ExitHead(2 * c, num_classes, cfg[0], 4),
                                    ExitHead(4 * c, num_classes, cfg[1], 8),
                                    ExitHead(c, num_classes, cfg[2], 2)])
        self.num_classes = num_classes
        self.default_input_shape = DEFAULT_INPUT_SHAPE
        self.input_normalization = dict(IMAGENET_NORMALIZATION)
        self.output_strides = (4, 8, 2)
        self.exit_configs = tuple(cfg)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        out1 = self.exits[0](e2, x)
        e3 = self.enc3(e2)
        out2 = self.exits[1](e3, x)
        e4 = self.enc4(e3)
        d = self.dec1(self.dec2(self.dec3(e4, e3), e2), e1)
        return [out1, out2, self.exits[2](d, x)]


@register("unet-skip", "Small U-Net-like net, 3 exits; an encoder skip jumps over two exits to the last decoder")
def unet_skip(num_classes: int = 19, exits=None, final_exit=None, base_width: int = 32, checkpoint=None):
    return finish(UNetSkip(num_classes, base_width, exits, final_exit), checkpoint)
