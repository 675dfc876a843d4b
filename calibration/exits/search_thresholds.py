"""The threshold search inside one architecture (kept-exit subset) of a :class:`~mesc.calibration.exits.search.Searcher`.

1. If the product of the kept exits' option counts is at most ``exhaustive_limit``, every
   combination is evaluated (:func:`exhaustive`: the exact optimum over the grid). Given the best
   configuration found so far in other architectures (``cap``: the largest expected cost that could
   still beat it), a combination's expected cost is computed first, from the exit counts alone,
   and its mIoU only where the cost is within the cap (the paper's "latency constraint checked
   before accuracy is evaluated"): the architecture's best is then exact wherever it beats the
   incumbent, and whatever it returns otherwise loses to it.
2. Otherwise (:func:`local`): coordinate descent, each step evaluating *all* options of one exit
   with the others fixed, to a fixed point; run as a homotopy over the bound (a quarter, half, ...,
   all of the allowed drop or cost reduction) so that the first exits do not take all the slack,
   from two exit orders, then two-exit moves. The result is coordinate-wise optimal: no change of
   one exit's (th_pix, th_img) improves it. Exact evaluation, heuristic optimisation; it never
   uses the incumbent, so it returns the same whatever was searched before.
"""

from __future__ import annotations

import itertools

import numpy as np

from mesc.calibration.exits.search_results import argbest, better, pareto_front


def exhaustive(s, kept, sid, objective, bound, cap=None):
    """Every combination: the outer exits enumerated, the last non-final one vectorised.
    Returns (cost, mIoU, choice), or None when ``cap`` admits no combination."""
    sizes = [len(s.options[e]) for e in kept[:-1]]
    if not sizes:
        cost, mi, _ = s.evaluate(kept, s._passes(kept, np.zeros((1, 0), dtype=int)), sid)
        return float(cost[0]), float(mi[0]), np.zeros(0, dtype=int)
    best = None
    j = len(sizes) - 1
    for outer in itertools.product(*[range(n) for n in sizes[:-1]]):
        choice = np.array(list(outer) + [0], dtype=int)
        if cap is None:
            cost, mi, _ = s.evaluate_coordinate(kept, choice, j, sid)
            idx = None
        else:
            idx, cost, mi = s.evaluate_coordinate_capped(kept, choice, j, cap, sid)
            if not len(idx):
                continue
        i = argbest(cost, mi, objective, bound)
        choice[j] = i if idx is None else idx[i]
        cand = (float(cost[i]), float(mi[i]), choice)
        if best is None or better(cand[:2], best[:2], objective, bound):
            best = cand
    return best


def descent(s, kept, sid, objective, bound, start, order, max_sweeps=20):
    choice = np.array(start, dtype=int)
    cost, mi, _ = s.evaluate(kept, s._passes(kept, choice[None]), sid)
    cur = (float(cost[0]), float(mi[0]))
    for _ in range(max_sweeps):
        improved = False
        for j in order:
            cost, mi, _ = s.evaluate_coordinate(kept, choice, j, sid)
            i = argbest(cost, mi, objective, bound)
            if better((cost[i], mi[i]), cur, objective, bound):
                choice = choice.copy()
                choice[j] = i
                cur, improved = (float(cost[i]), float(mi[i])), True
        if not improved:
            break
    return cur[0], cur[1], choice


def pair_refine(s, kept, sid, objective, bound, start, cur, candidates=24, rounds=3):
    """Two-exit moves: exit ``j`` to one of its efficient options (the Pareto front of its
    one-exit sweep), then the best option of exit ``l`` given that. Escapes the coordinate-wise
    optima where one exit must give up slack for another to use it."""
    choice = np.array(start, dtype=int)
    k1 = len(kept) - 1
    for _ in range(rounds):
        improved = False
        for j in range(k1):
            cost, mi, _ = s.evaluate_coordinate(kept, choice, j, sid)
            front = pareto_front(np.stack([cost, mi], 1))
            if len(front) > candidates:
                front = front[np.linspace(0, len(front) - 1, candidates).round().astype(int)]
            for l in range(k1):
                if l == j:
                    continue
                for oj in front:
                    trial = choice.copy()
                    trial[j] = oj
                    c2, m2, _ = s.evaluate_coordinate(kept, trial, l, sid)
                    i = argbest(c2, m2, objective, bound)
                    if better((c2[i], m2[i]), cur, objective, bound):
                        trial[l] = i
                        choice, cur, improved = trial, (float(c2[i]), float(m2[i])), True
        if not improved:
            break
    return cur[0], cur[1], choice


def local(s, kept, sid, objective, bound, ref, stages=4):
    k1 = len(kept) - 1
    full_cost = float(s.costs.subset_segment_costs(kept).sum() + s.costs.tail[kept[-1]])
    results = []
    for order in (list(range(k1)), list(range(k1))[::-1]):
        choice = np.zeros(k1, dtype=int)
        for st in range(1, stages + 1):
            if objective == "max-drop":
                b = ref - (ref - bound) * st / stages
            else:
                b = full_cost - (full_cost - bound) * st / stages
            cost, mi, choice = descent(s, kept, sid, objective, b, choice, order)
        cost, mi, choice = descent(s, kept, sid, objective, bound, choice, order)
        results.append((cost, mi, choice))
    out = results[0]
    for r in results[1:]:
        if better(r[:2], out[:2], objective, bound):
            out = r
    if k1 > 1:
        cost, mi, choice = pair_refine(s, kept, sid, objective, bound, out[2], out[:2])
        out = descent(s, kept, sid, objective, bound, choice, list(range(k1)))
    return out


def is_exhaustive(s, kept, exhaustive_limit: int) -> bool:
    """Whether the architecture ``kept`` is searched exhaustively (its option product is small)."""
    return float(np.prod([len(s.options[e]) for e in kept[:-1]], dtype=np.float64)) <= exhaustive_limit


def search_architecture(s, kept, sid, objective, bound, ref_miou, exhaustive_limit, cap=None):
    """(cost, mIoU, choice) or None, and whether it was exhaustive."""
    if is_exhaustive(s, kept, exhaustive_limit):
        return exhaustive(s, kept, sid, objective, bound, cap), True
    return local(s, kept, sid, objective, bound, ref_miou), False


__all__ = ["exhaustive", "descent", "pair_refine", "local", "is_exhaustive", "search_architecture"]
