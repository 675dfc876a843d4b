"""What the exit search returns, and how two of its outcomes compare.

A configuration's figures on the calibration set are (expected cost, mIoU); under a bound they
rank by the key ``(violation, primary, secondary)`` of :func:`keys` (smaller is better): with
``max-drop`` the mIoU shortfall, then cost, then -mIoU; with ``max-cost`` the cost excess, then
-mIoU, then cost. Every search (per architecture, over architectures, pruned or not) ranks with
these functions, so pruning and brute force agree on what "better" means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mesc.errors import CalibrationError

_EPS = 1e-12


@dataclass
class Configuration:
    """One exit configuration and its calibration-set figures."""

    mode: str                      # "input-dependent", "budgeted" or "anytime"
    exits: list                    # names of the kept exits, shallow to deep
    th_pix: dict                   # kept exit -> th_pix (None for single-score policies / final)
    th_img: dict                   # kept exit -> th_img (final exit: 0.0, always taken)
    expected_cost: float
    miou: float
    exit_fraction: dict            # kept exit -> fraction of images that leave there
    unit: str = "MFLOPs"
    policy: str = "mess"
    thresholds: dict = field(default_factory=dict)  # kept exit -> the policy's own threshold names

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in asdict(self).items()}


@dataclass
class SearchResult:
    best: Configuration
    reference: Configuration       # final exit only
    budgeted: list                 # one Configuration per exit (always that exit)
    anytime: list                  # per exit: cost of running all exits up to it, its mIoU
    points: np.ndarray             # (P, 2): expected cost, mIoU of every evaluated configuration
    # (P,) subset id: index into ``subsets``; -2 - e for exit e alone (budgeted); -1 unknown
    point_subsets: np.ndarray
    subsets: list                  # kept-exit index tuples: those searched (every one without pruning)
    objective: str                 # "max-drop" or "max-cost"
    bound: float
    exhaustive: dict = field(default_factory=dict)  # subset -> True if searched exhaustively
    budgeted_best: Configuration | None = None  # the best single exit under the bound (None: none meets it)
    anytime_best: dict | None = None  # max-cost: the deepest exit an anytime run reaches within the bound
    seconds: float = 0.0
    evaluated: int = 0
    # per subset, in ``subsets`` order: {"best": its best Configuration (meeting the bound where it
    # can), "feasible", "exhaustive", "seconds", "fixed_heads" (only first heads)}: what each
    # choice of heads gives on its own
    by_subset: list = field(default_factory=list)
    # the best configuration using only the first head of every point (candidate 0: what an
    # uncalibrated package runs); the search's gain over fixed heads. Without candidates: ``best``.
    fixed_heads_best: Configuration | None = None
    # the architecture space and what pruning did with it (:mod:`~mesc.calibration.exits.search_space`):
    # {"architectures": the space's size, "searched": threshold searches run, "pruned": {rule: count},
    #  "visited": configurations whose cost was computed (``evaluated``: whose mIoU was too)}
    space: dict = field(default_factory=dict)

    def pareto(self) -> np.ndarray:
        """Indices into ``points`` of the Pareto front (lower cost, higher mIoU), by cost."""
        return pareto_front(self.points)

    def meets_bound(self, cfg: Configuration) -> bool:
        return meets_bound(cfg, self.objective, self.bound)


def meets_bound(cfg: Configuration, objective: str, bound: float) -> bool:
    """Whether ``cfg`` meets the bound (mIoU at least ``bound``, or cost at most ``bound``),
    with the search's tolerance for float sums."""
    if objective == "max-drop":
        return bool(cfg.miou >= bound - 1e-9)
    return bool(cfg.expected_cost <= bound * (1 + 1e-9))


def pareto_front(points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((-points[:, 1], points[:, 0]))
    best = -np.inf
    keep = []
    for i in order:
        if points[i, 1] > best + _EPS:
            keep.append(i)
            best = points[i, 1]
    return np.asarray(keep, dtype=int)


class InfeasibleBound(CalibrationError):
    """No configuration meets the bound; ``result`` holds the best effort."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------------------------
# ranking

def keys(cost, mi, objective: str, bound: float):
    """Sort keys (violation, primary, secondary) of arrays of (cost, mIoU); smaller is better."""
    if objective == "max-drop":
        viol = np.maximum(bound - mi, 0.0)
        viol = np.where(viol > _EPS, viol, 0.0)
        return viol, cost, -mi
    viol = np.maximum(cost - bound, 0.0)
    viol = np.where(viol > _EPS * max(1.0, abs(bound)), viol, 0.0)
    return viol, -mi, cost


def argbest(cost, mi, objective: str, bound: float) -> int:
    """Index of the best of arrays of (cost, mIoU); the first among equals."""
    a, b, c = keys(cost, mi, objective, bound)
    return int(np.lexsort((c, b, a))[0])


def better(x, y, objective: str, bound: float) -> bool:
    """Is (cost, mIoU) ``x`` strictly better than ``y``?"""
    kx = [float(np.ravel(v)[0]) for v in keys(np.array([x[0]], float), np.array([x[1]], float), objective, bound)]
    ky = [float(np.ravel(v)[0]) for v in keys(np.array([y[0]], float), np.array([y[1]], float), objective, bound)]
    for a, b in zip(kx, ky):
        if a < b - 1e-12:
            return True
        if a > b + 1e-12:
            return False
    return False


__all__ = ["Configuration", "SearchResult", "InfeasibleBound", "meets_bound", "pareto_front", "keys", "argbest",
           "better"]
