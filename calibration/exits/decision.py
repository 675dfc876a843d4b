"""Training the learned exit policy (the thesis' auxiliary decision network) on the memo.

Per early exit, a :class:`~mesc.policy.learned.DecisionNet` learns from the decision features
the memo keeps (:mod:`mesc.policy.learned`) whether an image is *good enough* at that exit: its
own mIoU there (classes present in the image or the prediction, from the memo's per-image
counts) is within ``margin`` of its mIoU at the final exit. The final exit's network is the
constant "always good" (it takes every image that reaches it anyway).

The training is numpy, full batch: binary cross-entropy with L2 weight decay, Adam, a fixed
number of steps from a seeded initialisation, so the same memo and seed give the same weights
bit for bit on one machine, and calibrate needs no torch (it runs where the runtime is
installed). The features are standardised and the standardisation folded into the first
layer, so the exported network reads the raw features.

The scores the threshold search uses are the deployed network's own on the calibration images,
so the report predicts what the runtime does on them; like every threshold chosen on one set,
they are optimistic on new images (``python -m mesc.benchmarks.calibrated`` measures by how
much for MESS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesc.errors import CalibrationError
from mesc.policy.learned import FEATURES, DecisionNet

DEFAULT_MARGIN = 0.01  # 1 pp of per-image mIoU, where calibrate has no --max-drop to take it from


@dataclass
class TrainOptions:
    hidden: int = 8
    steps: int = 600
    lr: float = 0.03
    weight_decay: float = 1e-3
    seed: int = 0


def image_miou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per image and exit (N x E): mean IoU over the classes present in the image or its
    prediction (union > 0); 1.0 where no class is (nothing to get wrong)."""
    inter, union = np.asarray(inter, np.float64), np.asarray(union, np.float64)
    present = union > 0
    iou = np.where(present, inter / np.where(present, union, 1.0), 0.0)
    count = present.sum(-1)
    return np.where(count > 0, iou.sum(-1) / np.maximum(count, 1), 1.0)


def good_enough(inter, union, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """N x E bool: the image's mIoU at the exit is within ``margin`` of its final-exit mIoU."""
    m = image_miou(inter, union)
    return m >= m[:, -1:] - margin


def train_decision_net(features: np.ndarray, labels: np.ndarray, options: TrainOptions | None = None) -> DecisionNet:
    """A :class:`DecisionNet` predicting ``labels`` (N, bool) from ``features`` (N x FEATURES)."""
    o = options or TrainOptions()
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[1] != FEATURES or len(x) != len(y) or not len(y):
        raise CalibrationError(f"decision training needs N x {FEATURES} features and N labels, got features "
                               f"{x.shape} and {y.shape[0]} labels")
    rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    if y.min() == y.max():  # one class only: the constant predictor is the best there is
        return DecisionNet(np.zeros((FEATURES, o.hidden)), np.zeros(o.hidden), np.zeros(o.hidden),
                           np.log(rate / (1 - rate)))
    mu, sigma = x.mean(0), x.std(0)
    sigma = np.where(sigma > 1e-6, sigma, 1.0)
    z = (x - mu) / sigma
    rng = np.random.default_rng(o.seed)
    params = [rng.normal(0, np.sqrt(2.0 / FEATURES), (FEATURES, o.hidden)), np.zeros(o.hidden),
              rng.normal(0, np.sqrt(1.0 / o.hidden), o.hidden), np.array(np.log(rate / (1 - rate)))]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = len(y)
    for t in range(1, o.steps + 1):
        w1, c1, w2, c2 = params
        pre = z @ w1 + c1
        h = np.maximum(pre, 0.0)
        p = 1.0 / (1.0 + np.exp(-(h @ w2 + c2)))
        d_logit = (p - y) / n  # d BCE / d logit, averaged
        d_h = np.outer(d_logit, w2) * (pre > 0)
        grads = [z.T @ d_h + o.weight_decay * w1, d_h.sum(0), h.T @ d_logit + o.weight_decay * w2,
                 np.array(d_logit.sum())]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] = params[i] - o.lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
    w1, c1, w2, c2 = params
    # fold the standardisation: ((x - mu) / sigma) @ w1 + c1 == x @ (w1 / sigma) + (c1 - (mu / sigma) @ w1)
    return DecisionNet(w1 / sigma[:, None], c1 - (mu / sigma) @ w1, w2, float(c2))


def train_exit_nets(memo, margin: float = DEFAULT_MARGIN, options: TrainOptions | None = None) -> dict:
    """One :class:`DecisionNet` per exit of ``memo`` (exit name -> net), trained on the memo's
    features and the good-enough labels; the final exit's is the constant "good"."""
    if memo.features is None:
        raise CalibrationError("the calibration memo has no decision features (a cache from an older mesc); "
                               "run calibrate again without that --cache")
    labels = good_enough(memo.inter, memo.union, margin)
    return {name: train_decision_net(memo.features[:, e], labels[:, e], options) for e, name in enumerate(memo.exits)}


def learned_scores(memo, nets: dict) -> np.ndarray:
    """N x E: each exit's network's score on the memo's features (what the search thresholds)."""
    return np.stack([nets[name].score(memo.features[:, e]) for e, name in enumerate(memo.exits)], axis=1)


__all__ = ["DEFAULT_MARGIN", "TrainOptions", "good_enough", "image_miou", "learned_scores", "train_decision_net",
           "train_exit_nets"]
