"""The exit policy computed on the host, for packages exported without the in-graph policy.

It forwards to the numpy reference in :mod:`mesc.policy`, so the host and the graph share one
definition; the runtime only downloads the exit's logits in this case.
"""

from __future__ import annotations

import numpy as np


def decide(logits: np.ndarray, policy: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labels N x H x W int32, score N float) for one exit's logits under its policy settings:
    MESS's c_img, or the score of the exit's policy kind (mean confidence, FFT magnitude)."""
    from mesc import policy as reference

    # MESS in the box-sum form: the same c_img as the explicit median, without sorting windows
    score = reference.policy_scores(logits, policy)
    return labels_only(logits), np.asarray(score, np.float64).reshape(-1)


def labels_only(logits: np.ndarray) -> np.ndarray:
    from mesc import policy as reference

    return reference.predicted_labels(logits).astype(np.int32)
