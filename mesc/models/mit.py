"""MiT-B0 (the SegFormer encoder, Xie et al. 2021) with MESS exits on its stage outputs and the
all-MLP SegFormer decode head as the final exit.

Four stages, each an overlapping patch embedding (strided conv + LayerNorm), transformer blocks
with efficient self-attention (keys and values from a map shrunk by a strided conv, ratio 8, 4,
2, 1) and Mix-FFN (a depthwise 3x3 conv between the two linear layers: the only positional
information), then LayerNorm. Every backbone block is one stage and passes an N x C x H x W map,
so an exit can sit after any stage; the decode head reads all four.

Written for both captures, torch.fx and torch.export: sizes are read one dimension at a time
(fx cannot iterate ``x.shape``), and the exporter folds them to constants at the export shape;
no op needs the batch size (tokens <-> maps go through flatten/unflatten of the other
dimensions), so ``--dynamic-batch`` holds.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mesc.errors import ModelLoadError
from mesc.models.blocks import ConvBNReLU
from mesc.models.heads import ExitConfig
from mesc.models.multiexit import DEFAULT_INPUT_SHAPE, MultiExitSegNet, build_multi_exit
from mesc.models.placement import BlockProfile
from mesc.models.registry import finish, register

# MiT-B0 (SegFormer's smallest encoder)
CHANNELS = (32, 64, 160, 256)
DEPTHS = (2, 2, 2, 2)
HEADS = (1, 2, 5, 8)
SR_RATIOS = (8, 4, 2, 1)
MLP_RATIO = 4
DECODER_DIM = 256
LN_EPS = 1e-6
# The stages are narrow (32..256 channels): no reduction, and dilated extra blocks give shallow
# exits a wider receptive field at no FLOP cost.
MIT_EARLY_EXIT = ExitConfig(reduction=1, extra_blocks=1, rapid_dilation=True, head="fcn")


def to_tokens(feat):
    """N x C x H x W -> N x HW x C."""
    return feat.flatten(2).transpose(1, 2)


def to_map(tokens, h, w):
    """N x HW x C -> N x C x H x W."""
    return tokens.transpose(1, 2).unflatten(2, (h, w))


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from the map shrunk ``sr_ratio`` times per
    side: N x N/sr^2 scores instead of N x N."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        # Decided at construction: the captured graph holds the reduction or not.
        self.reduces = sr_ratio > 1
        if self.reduces:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def _split_heads(self, t):
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x, h, w):
        kv = self.norm(to_tokens(self.sr(to_map(x, h, w)))) if self.reduces else x
        q, k, v = self._split_heads(self.q(x)), self._split_heads(self.k(kv)), self._split_heads(self.v(kv))
        # Written out rather than scaled_dot_product_attention: plain MatMul/Softmax ONNX that
        # every TensorRT generation parses.
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).flatten(2))


class MixFFN(nn.Module):
    """Linear, depthwise 3x3 conv on the token map, GELU, linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h, w):
        x = to_tokens(self.dwconv(to_map(self.fc1(x), h, w)))
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)), then x + Mix-FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.ffn = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.ffn(self.norm2(x), h, w)


class MiTStage(nn.Module):
    """Overlapping patch embedding (a conv whose kernel exceeds its stride), transformer blocks,
    LayerNorm; maps in, maps out."""

    def __init__(self, in_channels: int, dim: int, depth: int, heads: int, sr_ratio: int, mlp_ratio: int,
                 patch: int, stride: int):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=stride, padding=patch // 2)
        self.embed_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.blocks = nn.ModuleList(MiTBlock(dim, heads, sr_ratio, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.out_channels = dim

    def forward(self, x):
        feat = self.embed(x)
        h, w = feat.shape[2], feat.shape[3]
        tokens = self.embed_norm(to_tokens(feat))
        for block in self.blocks:
            tokens = block(tokens, h, w)
        return to_map(self.norm(tokens), h, w)


class AllMLPDecoder(nn.Module):
    """The SegFormer decode head as an exit: every stage linearly projected to ``dim`` channels
    (a 1x1 conv on the map), upsampled to the first stage's 1/4, concatenated deepest first, fused
    by a 1x1 conv-BN-ReLU and classified; then the input-size upsampling every exit ends with."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, dim: int = DECODER_DIM,
                 output_stride: int = 4):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.fuse = ConvBNReLU(dim * len(in_channels), dim, 1)
        self.classify = nn.Conv2d(dim, num_classes, 1)
        self.output_stride = output_stride
        self.config = None   # not a point of the MESS exit space

    def forward(self, feats, x):
        size = feats[0].shape[-2:]
        parts = [self.proj[0](feats[0])]
        for proj, feat in zip(self.proj[1:], feats[1:]):
            parts.append(F.interpolate(proj(feat), size=size, mode="bilinear", align_corners=False))
        logits = self.classify(self.fuse(torch.cat(parts[::-1], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class MiTSegNet(MultiExitSegNet):
    """MultiExitSegNet whose final exit reads every stage's output."""

    def forward(self, x):
        feat = x
        stages, outs = [], []
        final = len(self.exits) - 1
        # The loop and the membership test run on Python ints: both captures unroll them.
        for i, block in enumerate(self.blocks):
            feat = block(feat)
            stages.append(feat)
            k = self._exit_after.get(i)
            if k is not None and k != final:
                outs.append(self.exits[k](feat, x))
        outs.append(self.exits[final](stages, x))
        return outs


def mit_stages(channels: Sequence[int] = CHANNELS, depths: Sequence[int] = DEPTHS, heads: Sequence[int] = HEADS,
               sr_ratios: Sequence[int] = SR_RATIOS, mlp_ratio: int = MLP_RATIO) -> list[nn.Module]:
    sizes = {len(channels), len(depths), len(heads), len(sr_ratios)}
    if sizes != {4}:
        raise ModelLoadError(f"channels, depths, heads and sr_ratios need one entry per stage (4), got "
                             f"{list(channels)}, {list(depths)}, {list(heads)}, {list(sr_ratios)}")
    for c, n in zip(channels, heads):
        if c % n:
            raise ModelLoadError(f"{c} channels do not split into {n} attention heads")
    stages, cin = [], 3
    for s, (c, d, n, r) in enumerate(zip(channels, depths, heads, sr_ratios)):
        # stage 1 embeds 7x7 patches at stride 4, the others 3x3 at stride 2 (output strides 4..32)
        patch, stride = (7, 4) if s == 0 else (3, 2)
        stages.append(MiTStage(cin, c, d, n, r, mlp_ratio, patch, stride))
        cin = c
    return stages


@register("mit-b0", "MiT-B0 (SegFormer encoder, 4 transformer stages, OS32) with MESS exits on stage outputs "
                    "and the all-MLP SegFormer decode head as the final exit")
def mit_b0(num_classes: int = 19, num_exits: int | None = None, exit_points=None, exits=None,
           channels: Sequence[int] = CHANNELS, depths: Sequence[int] = DEPTHS, heads: Sequence[int] = HEADS,
           sr_ratios: Sequence[int] = SR_RATIOS, mlp_ratio: int = MLP_RATIO, decoder_dim: int = DECODER_DIM,
           checkpoint=None):
    """Exits on the stage outputs at equal shares of the encoder's FLOPs (by default three early
    exits: one after each of stages 1-3), the decode head as the final exit."""

    def decoder(profiles: Sequence[BlockProfile]) -> nn.Module:
        return AllMLPDecoder([p.channels for p in profiles], num_classes, decoder_dim, profiles[0].output_stride)

    model = build_multi_exit(
        mit_stages(channels, depths, heads, sr_ratios, mlp_ratio), num_classes=num_classes,
        num_exits=num_exits, exit_points=exit_points, exits=MIT_EARLY_EXIT if exits is None else exits,
        final_exit=None, default_final=ExitConfig(), default_num_exits=4,
        default_input_shape=DEFAULT_INPUT_SHAPE, first_exit_block=0, net_cls=MiTSegNet,
        final_head=decoder, area_scaled_profile=False)
    return finish(model, checkpoint)
