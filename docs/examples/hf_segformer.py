"""A Hugging Face SegFormer wrapped as a mesc multi-exit model (see docs/hf-models.md).

    mesc export --model docs/examples/hf_segformer.py:build --input-shape 1x3x128x256 -o out/hf-segformer

Early exits (mesc's MESS exit heads) read the encoder's stage outputs, which SegFormer returns
with ``output_hidden_states=True``; the model's own all-MLP decode head is the final exit. The
configuration is built locally (random init): nothing is downloaded. Needs ``pip install
'mesc[hf]'`` at export and training time only; the exported package runs without transformers
or torch.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from mesc.models import ExitConfig
from mesc.models.heads import ExitHead
from mesc.models.multiexit import IMAGENET_NORMALIZATION

EARLY_EXIT = ExitConfig(reduction=1, extra_blocks=1, rapid_dilation=True, head="fcn")


class SegformerMultiExit(nn.Module):
    """``forward(x)`` returns one logits map per exit, shallow to deep, each at the input size
    (the mesc model contract)."""

    def __init__(self, segformer, exit_stages=(0, 1, 2), exit_config: ExitConfig = EARLY_EXIT,
                 input_shape=(1, 3, 512, 1024)):
        super().__init__()
        cfg = segformer.config
        self.segformer = segformer
        self.exit_stages = tuple(exit_stages)
        # stage s of a SegFormer encoder has output stride 4 * 2**s
        self.exits = nn.ModuleList(
            ExitHead(cfg.hidden_sizes[s], cfg.num_labels, exit_config, output_stride=4 * 2 ** s)
            for s in self.exit_stages)
        # what `mesc export` and `mesc train` read when present
        self.default_input_shape = tuple(input_shape)
        self.input_normalization = dict(IMAGENET_NORMALIZATION)

    def forward(self, x):
        out = self.segformer(pixel_values=x, output_hidden_states=True, return_dict=True)
        stages = out.hidden_states   # the encoder's four N x C x H/4..H/32 x W/4..W/32 maps
        outs = [head(stages[s], x) for head, s in zip(self.exits, self.exit_stages)]
        # the decode head's logits are at 1/4; every exit ends with the upsampling to the input
        outs.append(F.interpolate(out.logits, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return outs


def build(num_classes: int = 19, exit_stages=(0, 1, 2), **config):
    """A factory for ``mesc export/train --model docs/examples/hf_segformer.py:build``.

    ``config`` overrides SegformerConfig's fields (its defaults are MiT-B0). For pretrained
    weights, build with ``SegformerForSemanticSegmentation.from_pretrained(...)`` instead (that
    downloads); ``--weights`` loads a checkpoint of this wrapper (e.g. from ``mesc train``).
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    segformer = SegformerForSemanticSegmentation(SegformerConfig(num_labels=num_classes, **config))
    return SegformerMultiExit(segformer, exit_stages).eval()
