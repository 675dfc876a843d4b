"""The exit policy computed on the host, for packages exported without the in-graph policy.

It forwards to the numpy reference in :mod:`mesc.policy`, so the host and the graph share one
definition; the runtime only downloads the exit's logits in this case.
"""

from __future__ import annotations

import numpy as np


def decide(logits: np.ndarray, policy: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labels N x H x W int32, c_img N float) for one exit's logits under its policy settings."""
    from mesc import policy as reference
    from mesc.manifest import edge_band_of

    # the box-sum form: the same c_img as the explicit median, without sorting windows
    c_img = reference.mess_confidence_fast(
        logits, policy.get("th_pix", 0.9), confidence=policy.get("confidence", "top1"),
        edge=policy.get("edge", True), stride=policy.get("stride", 8),
        band=edge_band_of(policy))
    return labels_only(logits), np.asarray(c_img, np.float64).reshape(-1)


def labels_only(logits: np.ndarray) -> np.ndarray:
    from mesc import policy as reference

    return reference.predicted_labels(logits).astype(np.int32)
