"""Scoring segmentation: mIoU from confusion matrices (:mod:`~mesc.evaluation.metrics`, numpy
only), logits scored at the masks' own resolution (:mod:`~mesc.evaluation.scoring`), and
``mesc eval``'s per-exit and policy report over a package (:mod:`~mesc.evaluation.evaluate`,
which runs the package; imported on use so the numpy pieces stay light)."""

from __future__ import annotations
