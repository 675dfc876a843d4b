"""The exit policy: which images leave at an exit, in one place.

Every kind of policy a package can run is defined once, in its own module, and registered in
one table (:mod:`.registry`) that every stage reads: :mod:`.mess` (MESS, the edge-enhanced
fraction of confident pixels), :mod:`.mean` (``mean_top1``, ``mean_entropy``), :mod:`.fft` and
:mod:`.learned` (the decision network). A kind holds its manifest settings and their checks,
its thresholds and how the score meets them (``>=`` or a ``[lo, hi]`` range), its never- and
always-exit thresholds, its numpy reference score, the host decision and the hooks of the
other stages (the calibration memo's score; the in-graph builders register by kind in
:mod:`mesc.exporters.policy`). The numpy pieces the kinds share: :mod:`.confidence` (softmax,
per-pixel confidences, labels) and :mod:`.band` (edge band, reflect pad, median, box sums);
the manifest's policy settings: :mod:`.settings`.

Everything here is numpy only, so the runtime and the calibration search use it without torch
or onnx.

Policies also exist as objects, ``score(logits) -> (N,)`` and ``decide(scores, **thresholds)
-> (N,) bool`` (:class:`ExitPolicy`), so a user can plug in their own::

    from mesc.policy import ThresholdPolicy, register_policy, get_policy, mean_confidence

    class MyPolicy(ThresholdPolicy):
        name = "mine"
        def __init__(self, th=0.5):
            super().__init__(th=th)
        def score(self, logits):
            return mean_confidence(logits, "top1")

    register_policy("mine", MyPolicy)
    policy = get_policy("mine", th=0.8)

A kind a package can name is a :class:`PolicyKind` given to :func:`register_kind` (see
``tests/policy/margin_kind.py`` for a whole one).
"""

from __future__ import annotations

from mesc.policy.band import (EDGE_BANDS, LEGACY_EDGE_BAND, band_radius, box_sum, check_edge_band, check_stride,
                              edge_band, edge_band_fast, edge_band_of, median_filter, reflect_pad)
from mesc.policy.base import ExitPolicy, ThresholdPolicy
from mesc.policy.confidence import (CONFIDENCE_KINDS, LOGITS_SHAPE, Softmaxed, check_confidence_kind, check_logits,
                                    check_threshold, mean_confidence, pixel_confidence, predicted_labels,
                                    probability_confidence, softmax)
from mesc.policy.registry import (ALWAYS_EXIT, KIND_THRESHOLDS, NEVER_EXIT, POLICY_KINDS, PolicyKind, exit_decision,
                                  get_kind, get_policy, kind_of, kinds, list_policies, policy_kind, policy_scores,
                                  register_kind, register_policy, unregister_kind)
from mesc.policy.settings import (COMPILED_POLICY_KEYS, IN_GRAPH_KEYS, POLICY_AT, POLICY_KEYS, check_exit_policy,
                                  check_policy)

# the built-in kinds, in the order the table lists them
from mesc.policy.mess import (POOLINGS, MessPolicy, mess_confidence, mess_confidence_fast,  # noqa: E402
                              mess_confidence_grid, mess_exit, mess_pixel_indicator, pooling_of)
from mesc.policy.mean import MeanConfidencePolicy  # noqa: E402
from mesc.policy.fft import FftPolicy, confidence_fft_magnitude, fft_magnitude  # noqa: E402
from mesc.policy.learned import DecisionNet, LearnedPolicy  # noqa: E402
from mesc.policy.registry import mark_built_in  # noqa: E402

mark_built_in()

__all__ = [
    "ALWAYS_EXIT", "COMPILED_POLICY_KEYS", "CONFIDENCE_KINDS", "DecisionNet", "EDGE_BANDS", "ExitPolicy", "FftPolicy",
    "IN_GRAPH_KEYS", "KIND_THRESHOLDS", "LEGACY_EDGE_BAND", "LOGITS_SHAPE", "LearnedPolicy", "MeanConfidencePolicy",
    "MessPolicy", "NEVER_EXIT", "POLICY_AT", "POLICY_KEYS", "POLICY_KINDS", "POOLINGS", "PolicyKind", "Softmaxed",
    "ThresholdPolicy", "band_radius", "box_sum", "check_confidence_kind", "check_edge_band", "check_exit_policy",
    "check_logits", "check_policy", "check_stride", "check_threshold", "confidence_fft_magnitude", "edge_band",
    "edge_band_fast", "edge_band_of", "exit_decision", "fft_magnitude", "get_kind", "get_policy", "kind_of", "kinds",
    "list_policies", "mean_confidence", "median_filter", "mess_confidence", "mess_confidence_fast",
    "mess_confidence_grid", "mess_exit", "mess_pixel_indicator", "pixel_confidence", "policy_kind", "policy_scores",
    "pooling_of",
    "predicted_labels", "probability_confidence", "reflect_pad", "register_kind", "register_policy", "softmax",
    "unregister_kind",
]
