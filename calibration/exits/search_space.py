"""The search over architectures (kept-exit subsets): exhaustive, with pruning that cannot lose
the optimum (MESS Sec. 5.1: pruning, memoisation, the latency constraint checked first).

The result equals the brute force that runs the same per-architecture threshold search
(:mod:`~mesc.calibration.exits.search_thresholds`) on every architecture in order and keeps the
first strictly better one: the winner is the best key, ties to the first architecture in that
order (:class:`Space`'s ``rank``). Pruned are only architectures whose every configuration is
worse than the best found so far (the *incumbent*), by the rules of
:mod:`~mesc.calibration.exits.search_bounds`:

1. ``dominated``: an architecture holding a dominated candidate head (its twin with the dominating
   head comes first and scores at least as well; exhaustive threshold searches only).
2. ``subtree``: every completion of the exits kept at the points decided so far is bounded below
   in cost by more than the incumbent's (Eq. 5) or above in mIoU by less than the incumbent's
   within the cost (Eq. 6): the whole subtree is skipped unvisited.
3. ``bound``: the architecture's own bound (least expected cost meeting the target, Eq. 5; or the
   best mIoU within the cost, Eq. 6) cannot beat the incumbent: skipped before any threshold.
4. Inside an exhaustive threshold search, a combination's cost is computed before its mIoU, and
   the mIoU only where the cost could beat the incumbent (``visited`` vs ``evaluated``).

The incumbent tightens as the search goes: the fixed-head architectures (the first head at every
point, which the report compares against) are searched first, then the rest best bound first, so
that the search stops as soon as the next bound cannot beat the incumbent.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from mesc.calibration.exits.search_bounds import SLACK, MemoBounds, dominators
from mesc.calibration.exits.search_results import better
from mesc.calibration.exits.search_thresholds import is_exhaustive, search_architecture
from mesc.errors import MescError


def architectures(point, every_point: bool = False) -> list[tuple]:
    """The kept-exit subsets the search considers, as exit-index tuples: at most one exit per
    exit point (``point[e]``, non-decreasing) and always the final exit; with ``every_point``
    exactly one exit at every point. Ordered by size, then lexicographically: without candidates
    that is ``itertools.combinations``' order, so ties resolve as before candidates existed."""
    point = [int(p) for p in point]
    last = len(point) - 1
    groups: dict[int, list] = {}
    for e, p in enumerate(point[:-1]):
        groups.setdefault(p, []).append(e)
    options = [g if every_point else [None, *g] for g in groups.values()]
    subsets = {tuple(e for e in pick if e is not None) + (last,) for pick in itertools.product(*options)}
    return sorted(subsets, key=lambda s: (len(s), s))


class Space:
    """The architectures to search: every one over the exit points (``subsets`` None: at most
    one head per point, the final exit always) or the listed ones, in that order."""

    def __init__(self, point, subsets=None):
        self.point = [int(p) for p in point]
        self.last = len(self.point) - 1
        groups: dict = {}
        for e, p in enumerate(self.point[:-1]):
            groups.setdefault(p, []).append(e)
        self.groups = list(groups.values())
        self.first = {g[0] for g in self.groups} | {self.last}
        self.listed = None
        if subsets is not None:
            self.listed = [tuple(int(x) for x in s) for s in subsets]
            for s in self.listed:
                self._check(s)
            self.index = {}
            for i, s in enumerate(self.listed):
                self.index.setdefault(s, i)

    def _check(self, s) -> None:
        last = self.last
        if not s or s[-1] != last or list(s) != sorted(set(s)) or not all(0 <= x <= last for x in s):
            raise MescError(f"exit subset {s} must be increasing and end with the final exit {last}")
        at = [self.point[x] for x in s]
        if len(set(at)) != len(at):
            raise MescError(f"exit subset {s} keeps two heads at one exit point (points {at}); "
                            f"keep at most one candidate per point")

    @property
    def size(self) -> int:
        if self.listed is not None:
            return len(self.index)
        return int(np.prod([1 + len(g) for g in self.groups], dtype=np.float64))

    def rank(self, kept) -> tuple:
        """Position in the brute force's order: a list's own, else by size, then exits."""
        kept = tuple(kept)
        return (self.index[kept],) if self.listed is not None else (len(kept), kept)

    def contains(self, kept) -> bool:
        return tuple(kept) in self.index if self.listed is not None else True

    def is_fixed(self, kept) -> bool:
        return all(e in self.first for e in kept)

    def ordered(self) -> list:
        """Every architecture in rank order (for the brute force; small spaces only)."""
        if self.listed is not None:
            return sorted(self.index, key=self.index.get)
        return architectures(self.point)


class Incumbent:
    """The best (cost, mIoU) found so far, its architecture and rank; what may still beat it."""

    def __init__(self, objective: str, bound: float):
        self.objective, self.bound = objective, bound
        self.res = self.kept = self.rank = None

    def offer(self, res, kept, rank) -> None:
        if res is None:
            return
        if self.res is None or better(res[:2], self.res[:2], self.objective, self.bound) or (
                not better(self.res[:2], res[:2], self.objective, self.bound) and rank < self.rank):
            self.res, self.kept, self.rank = res, list(kept), rank

    @property
    def feasible(self) -> bool:
        if self.res is None:
            return False
        cost, mi = self.res[:2]
        if self.objective == "max-drop":
            return mi >= self.bound - 1e-12
        return cost <= self.bound + 1e-12 * max(1.0, abs(self.bound))

    def beaten_by(self, value) -> bool:
        """Could an architecture whose bound is ``value`` (cost lower bound for max-drop, mIoU
        upper bound for max-cost, both over its configurations meeting the bound) beat this?"""
        if not self.feasible:
            return True  # an infeasible incumbent: anything might do better
        cost, mi = self.res[:2]
        if self.objective == "max-drop":
            return value <= cost + SLACK * max(1.0, abs(cost))
        return value >= mi - SLACK

    def cap(self):
        """The largest expected cost a configuration may have and still beat this (None: any)."""
        if not self.feasible:
            return None
        # max-drop: only a cheaper configuration (or as cheap and more accurate) wins; max-cost:
        # one more accurate at any cost within the bound does, so the bound is the only cap
        edge = self.res[0] if self.objective == "max-drop" else self.bound
        return edge * (1 + SLACK) + SLACK

    def order_key(self, value):
        return value if self.objective == "max-drop" else -value


class ArchitectureSearch:
    """One run over a :class:`Space` for a :class:`~mesc.calibration.exits.search.Searcher`."""

    def __init__(self, searcher, space: Space, objective: str, bound: float, ref_miou: float,
                 exhaustive_limit: int, prune: bool = True, progress=None):
        self.s, self.space = searcher, space
        self.objective, self.bound, self.ref_miou = objective, bound, ref_miou
        self.exhaustive_limit, self.prune, self.progress = exhaustive_limit, prune, progress
        self.found: list = []      # (kept, res or None, seconds, exhaustive, capped), in search order
        self.done: set = set()
        self.pruned = {"dominated": 0, "subtree": 0, "bound": 0}
        self.bounding_seconds = 0.0  # phase 1: the bounds of every architecture not pruned in a subtree
        self.bounded = 0             # architectures whose own bound phase 1 computed
        self.phase = "fixed heads"
        if prune:
            self.bounds = MemoBounds(searcher.inter, searcher.union, searcher.costs, objective, bound)
            self.dominators = dominators(searcher.inter, searcher.union, searcher.costs, searcher.options)

    # one architecture ------------------------------------------------------------------------
    def _evaluate(self, kept, inc: Incumbent) -> None:
        kept = list(kept)
        t0 = time.perf_counter()
        cap = inc.cap() if self.prune else None
        res, exh = search_architecture(self.s, kept, len(self.found), self.objective, self.bound, self.ref_miou,
                                       self.exhaustive_limit, cap)
        self.found.append((kept, res, time.perf_counter() - t0, exh, cap is not None))
        self.done.add(tuple(kept))
        inc.offer(res, kept, self.space.rank(kept))

    def _dominated(self, kept) -> bool:
        if not self.dominators or not is_exhaustive(self.s, kept, self.exhaustive_limit):
            return False
        for j, h in enumerate(kept[:-1]):
            for d in self.dominators.get(h, ()):
                twin = list(kept)
                twin[j] = d
                if self.space.contains(twin) and self.space.rank(twin) < self.space.rank(kept) \
                        and is_exhaustive(self.s, twin, self.exhaustive_limit):
                    return True
        return False

    # the stages --------------------------------------------------------------------------
    def run(self):
        """(incumbent over the whole space, incumbent over the fixed heads)."""
        fixed = Incumbent(self.objective, self.bound)
        self._stage(fixed, fixed_only=True)
        best = Incumbent(self.objective, self.bound)
        best.offer(fixed.res, fixed.kept or [], fixed.rank)
        if any(len(g) > 1 for g in self.space.groups) and not (
                self.space.listed is not None and all(self.space.is_fixed(k) for k in self.space.index)):
            self._stage(best, fixed_only=False)
        return best, fixed

    def _stage(self, inc: Incumbent, fixed_only: bool) -> None:
        self.phase = "fixed heads" if fixed_only else "bounding"
        if not self.prune:
            todo = [k for k in self.space.ordered() if self.space.is_fixed(k) == fixed_only]
            for kept in (todo if self.progress is None else self.progress(todo)):
                self._evaluate(kept, inc)
            return
        t0 = time.perf_counter()
        archs, values = self._candidates(inc, fixed_only)
        self.bounding_seconds += time.perf_counter() - t0
        order = sorted(range(len(archs)), key=lambda i: (inc.order_key(values[i]), self.space.rank(archs[i])))
        if not fixed_only:
            self.phase = "searching"
        it = order if self.progress is None else self.progress(order)
        for pos, i in enumerate(it):
            kept = archs[i]
            if not inc.beaten_by(values[i]):
                self.pruned["bound"] += len(order) - pos  # sorted: none after it can beat it either
                break
            if len(kept) > 2 and not inc.beaten_by(self.bounds.leaf(kept)):
                self.pruned["bound"] += 1
                continue
            if self._dominated(kept):
                self.pruned["dominated"] += 1
                continue
            self._evaluate(kept, inc)

    def _candidates(self, inc: Incumbent, fixed_only: bool):
        """Phase 1: the architectures of the stage with their fast bounds, subtrees whose bound
        cannot beat ``inc`` left out (and counted)."""
        space, b = self.space, self.bounds
        if space.listed is not None:
            archs = [list(k) for k in sorted(space.index, key=space.index.get)
                     if space.is_fixed(k) == fixed_only and k not in self.done]
            return archs, [b.leaf(k, levels="final") for k in archs]
        groups = [[g[0]] for g in space.groups] if fixed_only else space.groups
        last, count = space.last, len(groups)
        archs, values = [], []
        open_after = [sum(groups[q:], []) for q in range(count + 1)]
        leaves_under = [int(np.prod([1 + len(g) for g in groups[q:]], dtype=np.float64)) for q in range(count + 1)]

        def keep(kept, value):
            if not fixed_only and space.is_fixed(kept):
                return  # searched (or pruned) with the fixed heads
            self.bounded += 1
            if inc.beaten_by(value):
                archs.append(kept)
                values.append(value)
            else:
                self.pruned["bound"] += 1

        def visit(q, prefix):
            if count == 0:
                keep([last], b.leaf([last]))
                return
            if q == count - 1:
                cands = [None] + groups[q]
                for h, v in zip(cands, b.final_batch(prefix, cands, last)):
                    keep(prefix + ([] if h is None else [h]) + [last], float(v))
                return
            if q > 0 and inc.res is not None and not inc.beaten_by(b.subtree(prefix, open_after[q], last)):
                fixed_under = 0 if fixed_only or not space.is_fixed(prefix) else 2 ** (count - q)
                self.pruned["subtree"] += leaves_under[q] - fixed_under
                return
            for h in [None] + groups[q]:
                visit(q + 1, prefix + ([] if h is None else [h]))

        visit(0, [])
        return archs, values

    def stats(self) -> dict:
        return {"architectures": self.space.size, "searched": len(self.found), "pruned": dict(self.pruned),
                "pruning": self.prune, "bounding_seconds": round(self.bounding_seconds, 3),
                "bounded": self.bounded, "phase": self.phase}


__all__ = ["Space", "Incumbent", "ArchitectureSearch", "architectures"]
