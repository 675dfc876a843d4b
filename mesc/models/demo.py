"""The embedded demo model: a narrow MobileNetV2 with 3 exits for the 6-class synthetic data
set, small enough to export, build and run in tests and on CPU.

Its shape follows the MESS networks rather than equal FLOP shares: the final exit carries a
DeepLabV3 (ASPP) head and costs most of the network, while the early exits sit where the
backbone is still cheap (after the first stride-8 stage and after the 96-channel stage) with
light FCN heads widened by dilated blocks. On a small input a network's first, high-resolution
blocks cost far more time per FLOP than its deep ones (ONNX Runtime CPU, 128x256: the first
seven blocks take 13-14 % of the final exit's time for 4 % of its FLOPs); placed by FLOP share, the
first exit cost 0.54x of the final exit, leaving little to gain from exiting early.
"""

from __future__ import annotations

import os
from typing import Sequence

from mesc.models.candidates import with_candidate_heads
from mesc.models.heads import ExitConfig
from mesc.models.mobilenetv2 import DEPTH, build_mobilenetv2
from mesc.models.checkpoints import load_backbone_only
from mesc.models.registry import finish, register

DEMO_INPUT_SHAPE = (1, 3, 128, 256)
DEMO_CLASSES = 6
DEMO_WEIGHTS = os.path.join(os.path.dirname(__file__), "demo.pt")
# MobileNetV2 stages (1-based) after which the exits sit: the first stride-8 stage (16 channels at
# x0.5), the 96-channel stage (48 at x0.5), and the last stage
DEMO_EXIT_STAGES = (3, 5, 7)
DEMO_EARLY_EXIT = ExitConfig(reduction=1, extra_blocks=2, rapid_dilation=True, head="fcn")
DEMO_FINAL_EXIT = ExitConfig(reduction=1, extra_blocks=0, head="deeplab")
DEMO_FINAL_CHANNELS = 128


def stage_end_blocks(depth: Sequence[int], stages: Sequence[int] = DEMO_EXIT_STAGES) -> tuple[int, ...]:
    """Backbone block indices (0 = the stem) of the last block of each of ``stages``."""
    return tuple(sum(depth[:s]) for s in stages)


@register("demo", "MobileNetV2 x0.5, 3 exits (light early FCN exits, DeepLabV3 final), 6 classes, "
                  "128x256 input; loads mesc/models/demo.pt when present")
def demo(num_classes: int = DEMO_CLASSES, num_exits: int = 3, exit_points=None,
         exits=DEMO_EARLY_EXIT, final_exit=DEMO_FINAL_EXIT, width_mult: float = 0.5,
         depth: Sequence[int] = DEPTH, head_channels: int | None = DEMO_FINAL_CHANNELS,
         checkpoint=None, pretrained: bool = True):
    """With no ``checkpoint``, the trained demo.pt is loaded if it exists and the architecture
    is the default one (any architecture argument changed -> random init; pretrained=False too).

    Without ``exit_points`` the exits follow stages 3, 5 and 7 of ``depth``; with ``num_exits``
    other than 3 they are placed by FLOP share, as for the other MobileNetV2 models."""
    default_arch = (num_classes == DEMO_CLASSES and num_exits == 3 and exit_points is None
                    and exits == DEMO_EARLY_EXIT
                    and final_exit == DEMO_FINAL_EXIT and width_mult == 0.5
                    and tuple(depth) == tuple(DEPTH) and head_channels == DEMO_FINAL_CHANNELS)
    if checkpoint is None and pretrained and default_arch and os.path.isfile(DEMO_WEIGHTS):
        checkpoint = DEMO_WEIGHTS
    if exit_points is None and num_exits == 3:
        exit_points = stage_end_blocks(depth)
    return build_mobilenetv2("fcn", num_classes, num_exits, exit_points, exits, final_exit, width_mult,
                             depth, head_channels, checkpoint, default_num_exits=3,
                             default_input_shape=DEMO_INPUT_SHAPE)


@register("demo-search", "the demo with candidate heads at its two early exit points (the default MESS grid, "
                         "the demo's own early head first) for exit-architecture search; backbone and final "
                         "head loaded from mesc/models/demo.pt")
def demo_search(num_classes: int = DEMO_CLASSES, grid=None, init=DEMO_WEIGHTS, checkpoint=None):
    """``init``: a demo (stage-1) checkpoint whose backbone and final head are loaded, its early
    heads skipped (:func:`mesc.models.checkpoints.load_backbone_only`; the report is kept as
    ``model.init_report``); None starts from scratch. ``checkpoint``: a trained demo-search
    checkpoint, loaded strictly instead."""
    model = demo(num_classes=num_classes, pretrained=False)
    with_candidate_heads(model, grid)
    model.init_report = None
    if checkpoint is None and init is not None and (init != DEMO_WEIGHTS or os.path.isfile(DEMO_WEIGHTS)):
        model.init_report = load_backbone_only(model, init)
    return finish(model, checkpoint)
