"""The toy multi-exit nets the training tests share (also named as model specs,
``tiny_nets.py:tiny_model``, by the ``mesc train`` tests)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyMultiExit(nn.Module):
    """Three exits over a three-block conv backbone; heads upsample to the input size."""

    def __init__(self, num_classes=6, width=8):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.blocks = nn.ModuleList([block(3, width), block(width, width), block(width, width)])
        self.exits = nn.ModuleList([nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                                                  nn.ReLU(), nn.Conv2d(width, num_classes, 1))
                                    for _ in range(3)])

    def forward(self, x):
        outs, feat = [], x
        for block, head in zip(self.blocks, self.exits):
            feat = block(feat)
            outs.append(F.interpolate(head(feat), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return outs


def tiny_model():
    torch.manual_seed(0)
    return TinyMultiExit()


class TinyCandidates(TinyMultiExit):
    """TinyMultiExit's backbone and final head with two candidate heads at each early point."""

    def __init__(self, num_classes=6, width=8):
        super().__init__(num_classes, width)

        def head(c):
            return nn.Sequential(nn.Conv2d(width, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                 nn.Conv2d(c, num_classes, 1))

        self.exits[0] = nn.ModuleList([head(4), head(12)])
        self.exits[1] = nn.ModuleList([head(4), head(12)])

    def forward(self, x):
        outs, feat = [], x

        def up(t):
            return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        for block, heads in zip(self.blocks, self.exits):
            feat = block(feat)
            outs.append([up(h(feat)) for h in heads] if isinstance(heads, nn.ModuleList) else up(heads(feat)))
        return outs


def tiny_candidates():
    torch.manual_seed(5)
    return TinyCandidates()
