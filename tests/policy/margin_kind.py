"""A policy kind written outside mesc, as a user (or a new mesc kind) would: ``mean_margin``,
the image's mean of the top-1 minus the top-2 class probability, leaving when it reaches
``th_img``. This module is all of its numpy side (numpy only, like :mod:`mesc.policy`); its
in-graph builder is :mod:`margin_graph`. ``tests/policy/test_new_kind.py`` takes it through
export, run, calibrate and ``mesc inspect``."""

import numpy as np

from mesc.policy import PolicyKind, ThresholdPolicy, check_logits, register_kind, softmax, unregister_kind

NAME = "mean_margin"


def margin(p: np.ndarray) -> np.ndarray:
    """Mean over the image of p_top1 - p_top2 (N,), from class probabilities N x M x H x W."""
    if p.shape[1] < 2:
        return p[:, 0].mean(axis=(-2, -1))
    top2 = np.partition(p, -2, axis=1)[:, -2:]  # [:, 1] the largest, [:, 0] the second
    return (top2[:, 1] - top2[:, 0]).mean(axis=(-2, -1))


class MarginPolicy(ThresholdPolicy):
    name = NAME

    def __init__(self, th=None):
        super().__init__(th=th)

    def score(self, logits):
        return margin(softmax(check_logits(logits)))


KIND = PolicyKind(
    NAME,  # thresholds ("th_img",) and comparison "ge" are the defaults
    # a margin of 1.0 needs a saturated softmax; every margin is >= 0
    never_exit={"th_img": 1.0}, always_exit={"th_img": 0.0},
    reference=lambda logits, policy, net=None: margin(softmax(check_logits(logits))),
    memo_score=lambda s: margin(s.p),
    factory=MarginPolicy,
    summary="the mean top-1 minus top-2 probability, >= th_img")


def register() -> None:
    register_kind(KIND)


def unregister() -> None:
    unregister_kind(NAME)
