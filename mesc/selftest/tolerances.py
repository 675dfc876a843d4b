"""The bars a backend must clear against ONNX Runtime CPU FP32, per precision.

FP32 is not bit-exact across devices: ONNX Runtime CUDA and TensorRT run FP32 convolutions in
TF32 on Ampere and later by default (10-bit mantissa), hence a logit bar of 1 % of the logits'
scale. FP16 and INT8 bars follow what ``mesc prepare`` measures on the demo and toy models,
with room for other models and devices; a failure means a wrong result, not a slightly noisy one.
The logit error is the largest over every pixel, so INT8's bar is wide (the demo measures about
0.2 of the scale at 0.99 label agreement); agreement and exit decisions are INT8's real test.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Bars:
    agreement: float  # per-exit label agreement, at least
    logit_err: float  # max |logit error| / max |logit| of FP32, at most
    confidence_err: float  # max |c_img error|, at most; also the margin for borderline exit decisions


BARS = {
    "fp32": Bars(agreement=0.999, logit_err=0.01, confidence_err=0.01),
    "fp16": Bars(agreement=0.99, logit_err=0.03, confidence_err=0.05),
    "int8": Bars(agreement=0.95, logit_err=0.35, confidence_err=0.1),
}
