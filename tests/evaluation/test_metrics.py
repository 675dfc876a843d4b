"""The one mIoU: confusion matrix with the ignore index, counts, and mIoU over present classes."""

import numpy as np
import pytest

from mesc.evaluation.metrics import class_counts, confusion_matrix, label_miou, miou, miou_from_confusion


def test_miou_hand_case():
    target = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1]])
    conf = confusion_matrix(pred, target, 2)
    # class 0: tp 1, union 2; class 1: tp 1, union 2 (the ignored pixel is not counted)
    assert conf.tolist() == [[1, 1], [0, 1]]
    assert miou_from_confusion(conf) == pytest.approx(0.5)
    inter, union = class_counts(pred, target, 2)
    assert inter.tolist() == [1, 1] and union.tolist() == [2, 2]


def test_miou_skips_absent_classes():
    assert miou(np.array([5.0, 0.0, 1.0]), np.array([10.0, 0.0, 4.0])) == pytest.approx((0.5 + 0.25) / 2)
    # vectorised over leading axes; no class at all: 0 by default, nan for a confusion matrix
    assert miou(np.zeros((2, 3)), np.array([[0, 0, 0], [2.0, 0, 0]])).tolist() == [0.0, 0.0]
    assert np.isnan(miou_from_confusion(np.zeros((3, 3), np.int64)))


def _brute_label_miou(a, b):
    ious = [np.count_nonzero((a == c) & (b == c)) / np.count_nonzero((a == c) | (b == c))
            for c in np.union1d(np.unique(a), np.unique(b))]
    return float(np.mean(ious)) if ious else 1.0


@pytest.mark.parametrize("seed", range(5))
def test_label_miou_over_the_classes_either_map_uses(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, (9, 11))
    b = np.where(rng.random((9, 11)) < 0.7, a, rng.integers(2, 300, (9, 11)))  # 255 is a class here
    assert label_miou(a, b) == pytest.approx(_brute_label_miou(a, b), rel=1e-12)
    assert label_miou(a, a) == 1.0
    assert label_miou(a[:0], b[:0]) == 1.0


def test_counts_add_over_images():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (3, 8, 8))
    target = np.where(rng.random((3, 8, 8)) < 0.1, 255, rng.integers(0, 4, (3, 8, 8)))
    per_image = [class_counts(p, t, 4) for p, t in zip(pred, target)]
    inter, union = class_counts(pred, target, 4)
    assert np.array_equal(inter, sum(i for i, _ in per_image)) and np.array_equal(union, sum(u for _, u in per_image))
    assert float(miou(inter, union)) == pytest.approx(miou_from_confusion(confusion_matrix(pred, target, 4)))
