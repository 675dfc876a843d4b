"""A tiny three-exit segmentation net for the runtime tests (fx-traceable, 32x64 inputs).

No biases and ReLU only, so the logits scale with the input: multiplying an image by s makes
every exit more (s > 1) or less confident, which is how the tests spread images over exits.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPE = (1, 3, 32, 64)
CLASSES = 4


def _up(t, x):
    return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ThreeExits(nn.Module):
    default_input_shape = SHAPE

    def __init__(self, gain=(2.0, 8.0, 4.0)):
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.ReLU())
        self.s2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.ReLU())
        self.s3 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, bias=False), nn.ReLU())
        self.h1 = nn.Conv2d(8, CLASSES, 1, bias=False)
        self.h2 = nn.Conv2d(16, CLASSES, 1, bias=False)
        self.h3 = nn.Conv2d(16 + 8, CLASSES, 1, bias=False)
        with torch.no_grad():
            for h, g in zip((self.h1, self.h2, self.h3), gain):
                h.weight.mul_(g)

    def forward(self, x):
        a = self.s1(x)
        b = self.s2(a)
        c = self.s3(b)
        skip = F.interpolate(c, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return [_up(self.h1(a), x), _up(self.h2(b), x), _up(self.h3(torch.cat([skip, a], 1)), x)]


def three_exits():
    torch.manual_seed(0)
    return ThreeExits().eval()
