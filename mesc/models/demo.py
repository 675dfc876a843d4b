"""The embedded demo model: a narrow MobileNetV2 with 3 exits for the 6-class synthetic data
set, small enough to export, build and run in tests and on CPU."""

from __future__ import annotations

import os
from typing import Sequence

from mesc.models.mobilenetv2 import DEPTH, build_mobilenetv2
from mesc.models.registry import register

DEMO_INPUT_SHAPE = (1, 3, 128, 256)
DEMO_CLASSES = 6
DEMO_WEIGHTS = os.path.join(os.path.dirname(__file__), "demo.pt")


@register("demo", "MobileNetV2 x0.5, 3 exits, 6 classes, 128x256 input; loads mesc/models/demo.pt when present")
def demo(num_classes: int = DEMO_CLASSES, num_exits: int = 3, exit_points=None, exits=None, final_exit=None,
         width_mult: float = 0.5, depth: Sequence[int] = DEPTH, head_channels: int | None = None,
         checkpoint=None, pretrained: bool = True):
    """With no ``checkpoint``, the trained demo.pt is loaded if it exists and the architecture
    is the default one (any architecture argument changed -> random init; pretrained=False too)."""
    if checkpoint is None and pretrained and os.path.isfile(DEMO_WEIGHTS):
        default_arch = (num_classes == DEMO_CLASSES and num_exits == 3 and exit_points is None
                        and exits is None and final_exit is None and width_mult == 0.5
                        and tuple(depth) == tuple(DEPTH) and head_channels is None)
        if default_arch:
            checkpoint = DEMO_WEIGHTS
    return build_mobilenetv2("fcn", num_classes, num_exits, exit_points, exits, final_exit, width_mult,
                             depth, head_channels, checkpoint, default_num_exits=3,
                             default_input_shape=DEMO_INPUT_SHAPE)
