"""Bounds that let the architecture search skip what cannot win (MESS Sec. 5.1, Eq. 5-6).

An architecture's configurations differ in where each image leaves, so every bound here is over
*assignments* of images to the kept exits (a threshold policy makes one such assignment; an
oracle may make any), which makes them valid whatever thresholds the search would try:

* Class totals. Image ``n`` leaving at one of the exits ``B`` adds at most ``max_B inter[n, e, c]``
  to class ``c``'s intersection and at least ``min_B union[n, e, c]`` to its union; going on to
  the exits ``A`` instead changes them by at most the gains ``max(max_A inter - max_B inter, 0)``
  and ``max(min_B union - min_A union, 0)``. With ``m`` images going on, class ``c``'s IoU is at
  most ``(sum_n max_B inter + top-m gains) / (sum_n min_B union - top-m union gains)``, the top-m
  taken per class (a relaxation: each class may pick its own images). Classes whose union can be
  zero never have a labelled pixel, so their IoU is 0 where it counts at all; leaving them out of
  the mean only raises it. So ``UB(m)``, the mean over the other classes, bounds the mIoU of every
  assignment that sends at most ``m`` images on (:meth:`MemoBounds.curves`).
* Images that must go on (``max-drop``). The least ``m`` with ``UB(m) >= target`` is a lower bound
  on how many images reach the exits ``A`` in any configuration meeting the target; none
  exists if ``UB(N)`` (every image at its oracle exit) misses it.
* Cost (MESS Table 1). A configuration's expected cost is ``sum_j r_j seg_j + sum_j f_j tail_j``:
  ``r_j`` the share of images reaching kept exit ``j`` (``r_1 = 1``), ``seg_j`` its backbone chunks
  and head, ``f_j`` the share leaving there. With ``r_j >= m_j / N`` (``m_j`` for ``B`` the kept
  exits before ``j``, ``A`` the rest; ``r_j >= r_{j+1}`` tightens them from the back) and the
  tails at least the smallest kept one, ``LB = seg_1 + sum_{j>1} m_j / N seg_j + min tail``
  bounds every configuration that meets the target (Eq. 5: skipped when above the best cost found).
* Accuracy within a cost (``max-cost``, Eq. 6). ``r_j <= (bound - seg_1 - min tail) / (seg_2 + ...
  + seg_j)`` caps the images reaching ``j``, so ``min_j UB_j(cap_j)`` bounds the mIoU of every
  configuration within the cost bound; and ``seg_1 + min tail`` above the bound leaves none.
* Subtrees. With the exits kept so far (a prefix of the points) and any candidate at the points
  still open, the images that do not reach the final exit leave at one of those: the same bounds
  with ``B`` their union and ``A`` the final exit hold for every completion (:meth:`MemoBounds.subtree`).
  An image leaving at exit ``e`` pays at least the chunks up to its point, the prefix's heads
  before it, its head and tail (the open points' heads it passes are unknown): for ``max-drop``
  the least ``m`` as above bounds the cost, for ``max-cost`` the cost bound caps the images that
  can reach the final exit (``m final + (N - m) early <= N bound``, ``early`` the least of the
  other exits' costs) and ``UB`` at that cap bounds the mIoU; the Lagrangian bound of the
  subtree's exits, each at that cost, serves both.

Candidate dominance (:func:`dominators`): head ``h`` at a point is dominated by an earlier head
``h'`` at the same point when ``h'`` costs no more (head and tail), every pass set of ``h`` is one
of ``h'``'s, and on every calibration image and class ``h'`` has no smaller intersection and no
larger union (zero exactly where ``h``'s is). Any configuration with ``h`` then has a twin with
``h'`` (same decisions) that costs no more and scores no less, in an architecture that comes first;
the exhaustive threshold search finds the twin, so the architecture with ``h`` cannot win.
"""

from __future__ import annotations

import numpy as np

# a bound is compared with slack this large, so float rounding never prunes a tie
SLACK = 1e-9


class MemoBounds:
    """Class-total bounds over one memo (``inter``, ``union``: N x E x C)."""

    def __init__(self, inter, union, costs, objective: str, bound: float):
        inter = np.asarray(inter, dtype=np.float64)
        union = np.asarray(union, dtype=np.float64)
        n, e, _ = inter.shape
        # classes labelled somewhere: every exit gives them a non-zero union on some image
        certain = union.min(axis=1).sum(0) > 0
        self.classes = int(certain.sum())
        # exit-major, so one exit's (N, C) block is contiguous
        self.inter = np.ascontiguousarray(inter[:, :, certain].transpose(1, 0, 2))
        self.union = np.ascontiguousarray(union[:, :, certain].transpose(1, 0, 2))
        self.n, self.e = n, e
        self.costs = costs
        self.objective = objective
        self.bound = float(bound)
        self.point = np.asarray(costs.point)

    # oracles -----------------------------------------------------------------------------
    def oracle(self, exits):
        """(max inter, min union) over ``exits`` per image and class, (N, C) each."""
        exits = list(exits)
        return self.inter[exits].max(0), self.union[exits].min(0)

    def curves(self, b_inter, b_union, a_inter, a_union) -> np.ndarray:
        """``UB(m)`` for m = 0..N (last axis), for oracles ``B`` and ``A`` of shape (..., N, C)."""
        if not self.classes:
            return np.ones(b_inter.shape[:-2] + (self.n + 1,))
        si = b_inter.sum(-2)[..., None, :]
        su = b_union.sum(-2)[..., None, :]
        gi = np.sort(np.maximum(a_inter - b_inter, 0.0), axis=-2)[..., ::-1, :]
        gu = np.sort(np.maximum(b_union - a_union, 0.0), axis=-2)[..., ::-1, :]
        zero = np.zeros(gi.shape[:-2] + (1, gi.shape[-1]))
        ci = np.concatenate([zero, np.cumsum(gi, -2)], -2)
        cu = np.concatenate([zero, np.cumsum(gu, -2)], -2)
        # the union never falls below the certain classes' least union (> 0): no division by 0
        return np.minimum((si + ci) / (su - cu), 1.0).mean(-1)

    def least_going_on(self, curve) -> np.ndarray:
        """The least m with ``UB(m) >= target`` per curve; N + 1 where no m reaches it."""
        ok = curve >= self.bound - SLACK
        return np.where(ok.any(-1), ok.argmax(-1), self.n + 1)

    # the Lagrangian bound --------------------------------------------------------------------
    def linear(self, exits):
        """A linear over-estimate of the mIoU of every assignment of the images to ``exits``:
        ``const + sum_n value[n, a(n)]`` (value: N x len(exits)).

        Per class, I/U = I * w with w = 1/U, over the box the exits allow (I in [Ilo, Ihi], U in
        [Ulo, Uhi]: sums of per-image minima and maxima): w lies under its chord over [Ulo, Uhi]
        (1/U is convex), and the bilinear I * w under both McCormick planes, whose w-coefficient
        (Ihi or Ilo) is not negative; a convex combination of the two planes, weighted by where the
        final exit's I lies in the box, is one linear over-estimate in (I, U). Summed over classes
        it is a sum over images of each image's exit's (I, U) terms."""
        ex = list(exits)
        i_all, u_all = self.inter[ex], self.union[ex]            # (k, N, C)
        ilo, ihi = i_all.min(0).sum(0), i_all.max(0).sum(0)    # (C,)
        ulo, uhi = u_all.min(0).sum(0), u_all.max(0).sum(0)
        whi, wlo = 1.0 / ulo, 1.0 / uhi
        span = uhi - ulo
        slope = np.where(span > 0, (wlo - whi) / np.where(span > 0, span, 1.0), 0.0)  # chord: whi + slope (U - ulo)
        i_ref = self.inter[ex[-1]].sum(0)
        width = ihi - ilo
        theta = np.where(width > 0, (i_ref - ilo) / np.where(width > 0, width, 1.0), 1.0)
        theta = np.clip(theta, 0.0, 1.0)
        # plane 1: Ihi * chord(U) + wlo * I - Ihi * wlo;  plane 2: Ilo * chord(U) + whi * I - Ilo * whi
        b_i = theta * wlo + (1 - theta) * whi
        b_u = (theta * ihi + (1 - theta) * ilo) * slope
        const = (theta * (ihi * (whi - slope * ulo) - ihi * wlo) + (1 - theta) * (ilo * (whi - slope * ulo) - ilo * whi))
        value = (i_all * b_i + u_all * b_u).sum(-1).T / self.classes   # (N, k)
        return float(const.sum() / self.classes), value

    def lagrange(self, exits, cost_to) -> float:
        """Weak duality over assignments of images to ``exits`` (each image paying ``cost_to`` of
        its exit, an N-average): ``max-drop``: a lower bound on the expected cost of those whose
        :meth:`linear` over-estimate meets the target; ``max-cost``: an upper bound on that
        over-estimate within the cost bound. Any multiplier gives a valid bound; the best of a
        grid of them is taken."""
        if not self.classes:
            return -np.inf if self.objective == "max-drop" else np.inf
        const, value = self.linear(exits)
        cost = np.asarray(cost_to, dtype=np.float64)[None, None, :] / self.n     # (1, 1, k)
        scale = max(float(np.max(cost_to)), 1e-12) / max(float(np.abs(value).max()) * self.n, 1e-300)
        lam = scale * np.geomspace(1e-3, 1e4, 48)[:, None, None]                  # (L, 1, 1)
        if self.objective == "max-drop":
            inner = (cost - lam * value[None]).min(-1).sum(-1)                     # (L,)
            return float(max(0.0, (lam[:, 0, 0] * (self.bound - const) + inner).max()))
        inner = (value[None] - lam * cost).max(-1).sum(-1)
        bound = self.bound * (1 + SLACK) + SLACK
        return float((const + lam[:, 0, 0] * bound + inner).min())

    def arch_lagrange(self, kept) -> float:
        seg, _ = self.segments(kept)
        cost_to = np.cumsum(seg) + self.costs.tail[list(kept)]
        return self.lagrange(kept, cost_to)

    # architectures -----------------------------------------------------------------------
    def segments(self, kept):
        return self.costs.subset_segment_costs(kept), float(self.costs.tail[list(kept)].min())

    def leaf(self, kept, levels: str = "all"):
        """The tighter of :meth:`class_leaf` and the Lagrangian bound (:meth:`arch_lagrange`)."""
        a = self.class_leaf(kept, levels)
        if levels != "all":
            return a
        b = self.arch_lagrange(kept)
        return max(a, b) if self.objective == "max-drop" else min(a, b)

    def class_leaf(self, kept, levels: str = "all"):
        """Bound on every configuration of the architecture ``kept``: ``max-drop``: the least
        expected cost meeting the target (inf: none meets it); ``max-cost``: the best mIoU within
        the cost bound (-inf: none is within it). ``levels="final"``: only the final exit's
        count (cheaper, looser)."""
        kept = list(kept)
        seg, tail = self.segments(kept)
        k = len(kept)
        js = list(range(1, k)) if levels == "all" else ([k - 1] if k > 1 else [])
        curves = {}
        for j in js:
            b = self.oracle(kept[:j])
            a = self.oracle(kept[j:])
            curves[j] = self.curves(*b, *a)
        if self.objective == "max-drop":
            if k == 1:
                whole = self.curves(*self.oracle(kept), *self.oracle(kept))[0]
                return float(seg[0] + tail) if whole >= self.bound - SLACK else np.inf
            need = np.zeros(k)
            need[0] = self.n
            for j, c in curves.items():
                need[j] = self.least_going_on(c)
            if need.max() > self.n:
                return np.inf
            need = np.maximum.accumulate(need[::-1])[::-1]  # r_j >= r_{j+1}
            return float(need @ seg / self.n + tail)
        # max-cost
        first = float(seg[0] + tail)
        if first > self.bound * (1 + SLACK) + SLACK:
            return -np.inf
        if k == 1:
            return float(self.curves(*self.oracle(kept), *self.oracle(kept))[0])
        spare = self.bound * (1 + SLACK) + SLACK - first
        reach = np.cumsum(seg[1:])
        best = np.inf
        for j, c in curves.items():
            cap = self.n if reach[j - 1] <= 0 else int(min(self.n, np.floor(self.n * spare / reach[j - 1] + 1e-9)))
            best = min(best, float(c[cap]))
        return best

    def final_batch(self, prefix, candidates, last):
        """Fast leaf bounds (the final exit's count only) of the architectures ``prefix + [h] +
        [last]`` for ``h`` in ``candidates`` (None: no exit there), in one vectorised pass."""
        pre = list(prefix)
        b_i, b_u = [], []
        if pre:
            pi, pu = self.oracle(pre)
        for h in candidates:
            if h is None:
                if pre:
                    b_i.append(pi)
                    b_u.append(pu)
                continue
            b_i.append(self.inter[h] if not pre else np.maximum(pi, self.inter[h]))
            b_u.append(self.union[h] if not pre else np.minimum(pu, self.union[h]))
        out = np.empty(len(candidates))
        rows = [i for i, h in enumerate(candidates) if h is not None or pre]
        if rows:
            curves = self.curves(np.stack(b_i), np.stack(b_u), self.inter[last][None], self.union[last][None])
        for r, i in enumerate(rows):
            kept = pre + ([] if candidates[i] is None else [candidates[i]]) + [last]
            out[i] = self._from_final_curve(kept, curves[r])
        for i, h in enumerate(candidates):
            if h is None and not pre:
                out[i] = self.leaf([last])
            else:
                lag = self.arch_lagrange(pre + ([] if h is None else [h]) + [last])
                out[i] = max(out[i], lag) if self.objective == "max-drop" else min(out[i], lag)
        return out

    def _from_final_curve(self, kept, curve) -> float:
        seg, tail = self.segments(kept)
        if self.objective == "max-drop":
            m = self.least_going_on(curve)
            if m > self.n:
                return np.inf
            return float(seg[0] + m / self.n * seg[1:].sum() + tail)
        first = float(seg[0] + tail)
        if first > self.bound * (1 + SLACK) + SLACK:
            return -np.inf
        reach = seg[1:].sum()
        spare = self.bound * (1 + SLACK) + SLACK - first
        cap = self.n if reach <= 0 else int(min(self.n, np.floor(self.n * spare / reach + 1e-9)))
        return float(curve[cap])

    def subtree(self, prefix, open_exits, last) -> float:
        """A bound on every architecture that keeps ``prefix`` at the points decided so far and
        any of ``open_exits`` (the candidates at the points still open) before the final exit
        ``last``: ``max-drop``: the least expected cost that could meet the target (inf: none
        can); ``max-cost``: the best mIoU that could fit the cost bound (-inf: none can)."""
        pre = list(prefix)
        before = pre + list(open_exits)
        if not before:
            return self.leaf([last])
        if self.objective == "max-drop":
            return max(self._subtree_classes(pre, before, last), self._subtree_lagrange(pre, before, last))
        return min(self._subtree_classes_within_cost(pre, before, last), self._subtree_lagrange(pre, before, last))

    def _subtree_costs(self, pre, exits) -> list:
        """Per exit of a subtree, the least an image leaving there pays: the chunks up to its
        point, the kept prefix's heads before it, its own head and tail (the open points' heads
        it passes are unknown, so left out)."""
        c = self.costs
        out = []
        for e in exits:
            heads = sum(float(c.head[p]) for p in pre if self.point[p] < self.point[e])
            out.append(c._chunks(-1, self.point[e]) + heads + c.head[e] + c.tail[e])
        return out

    def _subtree_lagrange(self, pre, before, last) -> float:
        """:meth:`lagrange` with every exit of the subtree open to every image, each paying
        :meth:`_subtree_costs` (a lower bound on what it pays in any completion)."""
        exits = sorted(set(before)) + [last]
        return self.lagrange(exits, self._subtree_costs(pre, exits))

    def _subtree_classes_within_cost(self, pre, before, last) -> float:
        """``max-cost``: the class-total bound with ``B`` the subtree's early exits and ``A`` the
        final one, at the most images the cost bound lets reach the final exit. An image there
        pays at least ``final``, any other at least ``early`` (:meth:`_subtree_costs`), so m of
        them there cost at least ``(m final + (N - m) early) / N``: within the bound only up to
        ``N (bound - early) / (final - early)`` (every m where ``final <= early``)."""
        costs = self._subtree_costs(pre, list(before) + [last])
        early, final = min(costs[:-1]), costs[-1]
        budget = self.bound * (1 + SLACK) + SLACK
        if min(early, final) > budget:
            return -np.inf
        curve = self.curves(*self.oracle(before), *self.oracle([last]))
        if final <= early:
            return float(curve[self.n])
        cap = int(min(self.n, np.floor(self.n * (budget - early) / (final - early) + 1e-9)))
        return float(curve[cap])

    def _subtree_classes(self, pre, before, last) -> float:
        c = self.costs
        curve = self.curves(*self.oracle(before), *self.oracle([last]))
        m = self.least_going_on(curve)
        if m > self.n:
            return np.inf
        tail = float(c.tail[before + [last]].min())
        final_point = self.point[last]
        if pre:
            p1 = self.point[pre[0]]
            first = c._chunks(-1, p1) + c.head[pre[0]]
            rest = c._chunks(p1, final_point) + c.head[last] + float(c.head[pre[1:]].sum())
            return float(first + m / self.n * rest + tail)
        q = int(self.point[before].min())  # no prefix: the first kept exit is an open one or the final
        least_head = float(c.head[before + [last]].min())
        return float(c._chunks(-1, q) + least_head + m / self.n * c._chunks(q, final_point) + tail)


def dominators(inter, union, costs, options) -> dict:
    """Exit -> the earlier heads at its point that dominate it (see the module docstring)."""
    point = np.asarray(costs.point)
    out = {}
    sets = {}
    last = len(point) - 1
    for h in range(last):
        for d in range(h):
            if point[d] != point[h]:
                continue
            if costs.head[d] > costs.head[h] or costs.tail[d] > costs.tail[h]:
                continue
            if (inter[:, d] < inter[:, h]).any() or (union[:, d] > union[:, h]).any() \
                    or ((union[:, d] == 0) != (union[:, h] == 0)).any():
                continue
            for x in (d, h):
                if x not in sets:
                    sets[x] = options[x].row_set()
            if sets[h] <= sets[d]:
                out.setdefault(h, []).append(d)
    return out


__all__ = ["MemoBounds", "dominators", "SLACK"]
