"""Small multi-exit models shared by the test folders (fx-traceable, 32x64 inputs).

Both toy families have the same graph (``_SkipGraph.forward``): three stages, an exit after
stages 1 and 2, and a skip from stage 1 that jumps over exit 1 into the final exit. ``SkipNet``
(the splitter's tests) has biases, BatchNorm, a dilated stage and a two-layer head;
``ThreeExits`` (the runtime's tests) has no biases and ReLU only, so its logits scale with the
input: multiplying an image by s makes every exit more (s > 1) or less confident, which is how
the runtime tests spread images over exits.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from toy_data import CLASSES, SHAPE, calibration_images  # noqa: F401  (tests import them from here too)


def _up(t, x):
    return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)


class _SkipGraph(nn.Module):
    """Stages s1..s3 and heads h1..h3 come from the subclass."""

    default_input_shape = SHAPE

    def forward(self, x):
        a = self.s1(x)
        b = self.s2(a)
        c = self.s3(b)
        skip = F.interpolate(c, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return [_up(self.h1(a), x), _up(self.h2(b), x), _up(self.h3(torch.cat([skip, a], 1)), x)]


class SkipNet(_SkipGraph):
    """Three exits; a skip from stage 1 jumps over exit 1 into the final exit's decoder."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.s2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.s3 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 2, dilation=2), nn.ReLU())
        self.h1 = nn.Conv2d(8, num_classes, 1)
        self.h2 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, num_classes, 1))
        self.h3 = nn.Conv2d(16 + 8, num_classes, 1)


class ThreeExits(_SkipGraph):
    """SkipNet's graph without biases or BatchNorm; ``gain`` scales each head's confidence."""

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


class DictNet(SkipNet):
    def forward(self, x):
        outs = super().forward(x)
        return {"early": outs[0], "mid": outs[1], "final": outs[2]}


class SingleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.c(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.c(x)
        if y.mean() > 0:  # data-dependent branch: cannot be split statically
            y = y * 2
        return [y, y + 1]


class ChainedExits(nn.Module):
    """Exit 1 is computed from exit 0's logits: exit 0 has no layers of its own to split off."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.head0 = nn.Conv2d(8, 4, 1)
        self.head1 = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        e0 = self.head0(self.stem(x))
        return [e0, self.head1(e0)]


class CandidateSkipNet(nn.Module):
    """``ThreeExits``' graph (no biases, ReLU only: confidence grows with the input's scale) with
    candidate heads of different cost at the early exit points: three after stage 1 (a 1x1
    classifier; 3x3 + 1x1; two 3x3 + 1x1), two after stage 2, one final exit with the skip."""

    default_input_shape = SHAPE

    def __init__(self, gain=(2.0, 8.0, 4.0)):
        from mesc.models.heads import ExitConfig

        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.ReLU())
        self.s2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.ReLU())
        self.s3 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, bias=False), nn.ReLU())
        self.h1 = nn.ModuleList(_candidate_head(8, blocks) for blocks in (0, 1, 2))
        self.h2 = nn.ModuleList(_candidate_head(16, blocks) for blocks in (0, 1))
        self.h3 = nn.Conv2d(16 + 8, CLASSES, 1, bias=False)
        with torch.no_grad():
            for heads, g in ((self.h1, gain[0]), (self.h2, gain[1]), ([self.h3], gain[2])):
                for h in heads:
                    last = h[-1] if isinstance(h, nn.Sequential) else h
                    last.weight.mul_(g)
        self.exit_configs = tuple(ExitConfig(reduction=1, extra_blocks=b, head="fcn") for b in (0, 1, 2, 0, 1, 0))

    def forward(self, x):
        a = self.s1(x)
        b = self.s2(a)
        c = self.s3(b)
        skip = F.interpolate(c, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return [[_up(h(a), x) for h in self.h1], [_up(h(b), x) for h in self.h2],
                _up(self.h3(torch.cat([skip, a], 1)), x)]


def _candidate_head(channels, blocks):
    layers = []
    for _ in range(blocks):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(channels, CLASSES, 1, bias=False))


def candidate_skipnet():
    torch.manual_seed(0)
    return CandidateSkipNet().eval()


class CandidateNet(nn.Module):
    """Two candidate heads at exit point 0 (a 1x1 conv and a heavier 3x3 head on one feature),
    one head at point 1 and the final: ``forward`` returns ``[[cand0, cand1], exit1, final]``,
    the candidate-head model contract (flattened: four exits on three points)."""

    default_input_shape = SHAPE

    def __init__(self, num_classes=6):
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.s2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.s3 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 2, dilation=2), nn.ReLU())
        self.h1 = nn.ModuleList([nn.Conv2d(8, num_classes, 1),
                                 nn.Sequential(nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, num_classes, 1))])
        self.h2 = nn.Conv2d(16, num_classes, 1)
        self.h3 = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        a = self.s1(x)
        b = self.s2(a)
        c = self.s3(b)
        return [[_up(h(a), x) for h in self.h1], _up(self.h2(b), x), _up(self.h3(c), x)]


def candidate_net(num_classes=6):
    torch.manual_seed(0)
    return CandidateNet(num_classes).eval()


def skipnet(num_classes=5):
    torch.manual_seed(0)
    return SkipNet(num_classes)


def three_exits():
    torch.manual_seed(0)
    return ThreeExits().eval()


def dictnet():
    torch.manual_seed(0)
    return DictNet()


def single_output():
    return SingleOutput()


def data_dependent():
    return DataDependent()


def chained_exits():
    return ChainedExits()


class TokenNet(nn.Module):
    """Attention stages on token sequences, written as transformer code is: shape unpacking
    (``(*x.shape[:-1], -1, d)``), ``x.view(*shape)`` and a dict of intermediate states. torch.fx
    symbolic tracing cannot take it; torch.export can. Three exits, one per stage."""

    default_input_shape = SHAPE

    def __init__(self, num_classes=CLASSES, dim=16, heads=2):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(3))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))
        self.exits = nn.ModuleList(nn.Conv2d(dim, num_classes, 1) for _ in range(3))

    def _attend(self, i, t):
        hidden_shape = (*t.shape[:-1], -1, self.head_dim)
        q, k, v = (p.view(hidden_shape).transpose(1, 2) for p in self.qkv[i](t).chunk(3, -1))
        a = torch.softmax(q @ k.transpose(-1, -2) * self.head_dim ** -0.5, -1) @ v
        return t + self.proj[i](a.transpose(1, 2).reshape(t.shape))

    def forward(self, x):
        f = self.embed(x)
        n, c, h, w = f.shape
        states = {"tokens": f.flatten(2).transpose(1, 2)}
        outs = []
        for i in range(3):
            states["tokens"] = self._attend(i, states["tokens"])
            shape = [n, h, w, c]
            grid = states["tokens"].view(*shape).permute(0, 3, 1, 2)
            outs.append(_up(self.exits[i](grid), x))
        return outs


def token_net():
    torch.manual_seed(0)
    return TokenNet().eval()
