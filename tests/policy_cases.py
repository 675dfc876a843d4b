"""Logits with confidences exactly at a threshold, for the policy tests of every layer (numpy
reference, in-graph policy, runtime)."""

import numpy as np


def tied_logits(confident_counts, h: int = 2, w: int = 4) -> np.ndarray:
    """N x 3 x h x w float32 logits, one image per count: that many pixels (row-major) with two
    classes tied at the top, so top-1 confidence is exactly 0.5 (the third class at -1e4 adds
    exactly 0 to the softmax sum, in float32 and float64), the other pixels a three-way tie
    (1/3). Every argmax is class 0: no edge band, and c_img at th_pix 0.5 is count / (h*w),
    exact in float32 for h*w a power of two."""
    x = np.zeros((len(confident_counts), 3, h, w), np.float32)
    for i, count in enumerate(confident_counts):
        x[i, 2].reshape(-1)[:count] = -1e4
    return x
