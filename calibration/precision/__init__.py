"""Precision preparation (``mesc prepare``): FP16 and explicit-INT8 graphs, checked against FP32.

:func:`prepare` writes them into the package (:mod:`~mesc.calibration.precision.preparation`)
from :mod:`~mesc.calibration.precision.fp16` and :mod:`~mesc.calibration.precision.int8`, fed by
the calibration images (:mod:`~mesc.calibration.precision.images`) and each segment's FP32 inputs
(:mod:`~mesc.calibration.precision.feeds`), with the exit policy tail kept FP32
(:mod:`~mesc.calibration.precision.nodes`), and checks them (:mod:`~mesc.calibration.precision.accuracy`).
"""

from __future__ import annotations

from mesc.calibration.precision.accuracy import compare_exits
from mesc.calibration.precision.feeds import segment_inputs, th_pix_feeds
from mesc.calibration.precision.fp16 import to_fp16
from mesc.calibration.precision.images import load_calibration_batches
from mesc.calibration.precision.int8 import check_qdq, quantize_segment
from mesc.calibration.precision.nodes import exit_tails, named_nodes, policy_tail
from mesc.calibration.precision.preparation import PREPARED, format_report, prepare

__all__ = ["PREPARED", "prepare", "format_report", "compare_exits", "segment_inputs", "th_pix_feeds", "to_fp16",
           "load_calibration_batches", "check_qdq", "quantize_segment", "exit_tails", "named_nodes",
           "policy_tail"]
