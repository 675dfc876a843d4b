"""Segmentation accuracy: the confusion matrix, per-class intersection/union counts and mIoU.

The one definition that calibration, training, the accuracy check of prepared graphs and the
benchmarks share. Numpy only, so the runtime side can use it without torch.

Conventions:

* a confusion matrix has the target class on the rows and the predicted class on the columns;
  target pixels equal to ``ignore_index`` (255, the mask value :mod:`mesc.datasets.synthetic`
  writes for unlabelled pixels) are not counted;
* per class, ``inter`` = pixels both call that class and ``union`` = pixels either does;
  counts add over pixels and images, so an mIoU over a set is taken from summed counts;
* mIoU is the mean over the classes whose union is not empty: a class absent from both the
  prediction and the target is left out, not counted as 0 or 1.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """``num_classes x num_classes`` int64 counts, rows = target, columns = prediction."""
    pred, target = np.asarray(pred), np.asarray(target)
    if ignore_index is not None:
        valid = target != ignore_index
        pred, target = pred[valid], target[valid]
    idx = target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def counts_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``(intersection, union)`` pixel counts of a confusion matrix."""
    inter = np.diag(cm)
    return inter, cm.sum(0) + cm.sum(1) - inter


def class_counts(pred: np.ndarray, target: np.ndarray, num_classes: int,
                 ignore_index: int | None = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``(intersection, union)`` pixel counts of ``pred`` against ``target``."""
    return counts_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def miou(inter, union, empty: float = 0.0) -> np.ndarray:
    """Mean IoU over the last axis of summed counts; classes whose union is 0 are left out.
    ``empty`` is the value where no class is present at all."""
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    valid = union > 0
    iou = np.where(valid, inter / np.where(valid, union, 1.0), 0.0)
    n = valid.sum(-1)
    return np.where(n > 0, iou.sum(-1) / np.maximum(n, 1), empty)


def miou_from_confusion(cm: np.ndarray) -> float:
    """Mean IoU of a confusion matrix; nan when it holds no pixel."""
    return float(miou(*counts_from_confusion(cm), empty=np.nan))


def label_miou(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean IoU of two label maps over the classes either uses, nothing ignored; 1.0 for two
    empty maps (nothing to disagree on)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if not pred.size and not target.size:
        return 1.0
    num_classes = int(max(pred.max(initial=0), target.max(initial=0))) + 1
    return float(miou(*class_counts(pred, target, num_classes, ignore_index=None)))


__all__ = ["IGNORE_INDEX", "confusion_matrix", "counts_from_confusion", "class_counts", "miou",
           "miou_from_confusion", "label_miou"]
