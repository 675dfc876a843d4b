"""The exit policy computed on the host, for packages exported without the in-graph policy.

The score is the exit's policy kind's own numpy reference (:meth:`mesc.policy.PolicyKind.score`),
so the host and the graph share one definition; the runtime only downloads the exit's logits
in this case, and the kind's decision (:func:`mesc.policy.exit_decision`) compares the score
with the thresholds as for an in-graph score.
"""

from __future__ import annotations

import numpy as np


def decide(logits: np.ndarray, policy: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labels N x H x W int32, score N float) for one exit's logits under its policy settings:
    the score of the exit's policy kind (MESS's c_img, the mean confidence, the FFT magnitude,
    ...); a kind that runs in the graph only is refused."""
    from mesc.policy import policy_scores

    return labels_only(logits), np.asarray(policy_scores(logits, policy), np.float64).reshape(-1)


def labels_only(logits: np.ndarray) -> np.ndarray:
    from mesc.policy import predicted_labels

    return predicted_labels(logits).astype(np.int32)
