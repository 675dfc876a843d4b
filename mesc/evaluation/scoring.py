"""Scoring an exit's logits against a mask at the mask's own resolution.

The common segmentation toolkits (mmsegmentation, the Cityscapes and VOC evaluation scripts)
score at the labels' original resolution: the logits are resized bilinearly to the mask's size
(``align_corners=False``, as ``torch.nn.functional.interpolate`` and mmseg's ``resize`` do) and
only then turned into labels by argmax. Downscaling the masks to the model input instead would
score a different, easier task (thin structures vanish with nearest-neighbour downscaling).
``mesc eval`` and calibration's memo both score through :func:`confusion_at_mask`, so their
per-exit mIoU agree. Numpy only: the runtime side uses it without torch.
"""

from __future__ import annotations

import numpy as np

from mesc.evaluation.metrics import confusion_matrix

# output rows upsampled at a time: bounds the float32 buffer to classes x ROWS x width
_ROWS = 64


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel: the two source pixels and the weight of the second (half-pixel
    centres, source coordinates below 0 clamped to 0, as torch's ``align_corners=False``)."""
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _row_resizer(logits: np.ndarray, size):
    """A function of a slice of output rows giving those rows of ``logits`` (M x h x w)
    resized to ``size`` (H, W). Block by block (height, then width) the buffers stay in cache."""
    height, width = size
    x = np.asarray(logits, dtype=np.float32)
    h0, h1, lh = _source_index(height, x.shape[-2])
    w0, w1, lw = _source_index(width, x.shape[-1])

    def rows_of(rows):
        # np.take, not fancy indexing: several times faster on these gathers
        a = np.take(x, h0[rows], axis=1)
        a *= (1.0 - lh[rows])[:, None]
        a += np.take(x, h1[rows], axis=1) * lh[rows][:, None]
        out = np.take(a, w0, axis=2)
        out *= 1.0 - lw
        out += np.take(a, w1, axis=2) * lw
        return out

    return rows_of


def _argmax0(block: np.ndarray) -> np.ndarray:
    """``block.argmax(0)`` (the first maximum on ties) as a running maximum over the classes:
    contiguous passes, where numpy's argmax over the first axis strides through memory."""
    best = block[0].copy()
    idx = np.zeros(best.shape, np.int32)
    for c in range(1, len(block)):
        better = block[c] > best
        idx[better] = c
        np.maximum(best, block[c], out=best)
    return idx


def upsample_bilinear(logits: np.ndarray, size) -> np.ndarray:
    """``logits`` (M x h x w) resized bilinearly to ``size`` (H, W): M x H x W float32."""
    return _row_resizer(logits, size)(slice(None))


def labels_at(logits: np.ndarray, size, labels: np.ndarray | None = None) -> np.ndarray:
    """The argmax labels of ``logits`` (M x h x w) at ``size`` (H, W). At the logits' own size
    ``labels`` (the exit's in-graph argmax), when given, are returned as they are: resizing
    to the same size is the identity, and the graph's labels are what the runtime returns."""
    size = tuple(int(s) for s in size)
    if tuple(logits.shape[-2:]) == size:
        return labels if labels is not None else np.asarray(logits).argmax(0)
    resized = _row_resizer(logits, size)
    out = np.empty(size, np.int32)
    for r in range(0, size[0], _ROWS):  # in row blocks: the full M x H x W never exists at once
        rows = slice(r, r + _ROWS)
        out[rows] = _argmax0(resized(rows))
    return out


def confusion_at_mask(logits: np.ndarray, mask: np.ndarray, num_classes: int,
                      labels: np.ndarray | None = None) -> np.ndarray:
    """The confusion matrix (:func:`mesc.evaluation.metrics.confusion_matrix`) of one exit's prediction
    against ``mask`` (255 ignored), scored at the mask's resolution."""
    return confusion_matrix(labels_at(logits, mask.shape, labels), mask, num_classes)


__all__ = ["upsample_bilinear", "labels_at", "confusion_at_mask"]
