"""A population of known law for the risk-control tests: memo arrays of two exits whose early
exit gets worse, and less confident, as an image gets harder."""

import numpy as np

from mesc.calibration.exits.search import Costs

COSTS = Costs(chunk=[1.0, 3.0], head=[0.2, 1.0], unit="ms", source="constructed")
GRID = [0.5]  # one th_pix: the confidence below stands for c_img at it


def population(n, rng):
    """(inter, union, conf) of ``n`` images, three classes: the early exit loses ``0.25 d^2`` of
    each class' intersection on an image of difficulty ``d`` (unions unchanged) and its
    confidence falls with ``d``."""
    d = rng.uniform(0, 1, n)
    union = np.repeat(rng.integers(20, 200, (n, 1, 3)).astype(float), 2, axis=1)
    inter = union.copy()
    inter[:, 1] *= 0.9
    inter[:, 0] *= np.clip(0.9 - 0.25 * d[:, None] ** 2 + rng.normal(0, 0.02, (n, 3)), 0, 1)
    conf = np.stack([np.clip(1 - d + rng.normal(0, 0.1, n), 0, 1), np.ones(n)], 1)[:, :, None]
    return inter, union, conf
