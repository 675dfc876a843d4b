"""Exit and threshold search over memoised per-exit results (``mesc calibrate``).

Everything here is numpy on small arrays that :mod:`mesc.calibration.exits.memo` filled once:

* ``inter[n, e, c]`` / ``union[n, e, c]``: pixel counts of class ``c`` for image ``n`` had it
  taken exit ``e``. Counts add over pixels, so the mIoU of any assignment of images to exits is
  ``mean_c sum_n inter[n, a(n), c] / sum_n union[n, a(n), c]`` (classes with a zero union are
  left out of the mean). It is *not* a sum of per-image terms, so it is always evaluated from
  the summed counts, never approximated.
* ``conf[n, e, g]``: the image confidence ``c_img`` of image ``n`` at exit ``e`` for the policy's
  ``g``-th setting (for MESS, ``c_img`` at ``th_pix = grid[g]``; for single-score policies
  ``G = 1``). Image ``n`` leaves at exit ``e`` when ``conf[n, e, g] >= th_img``.

Cost (MESS Table 1): for kept exits ``s_1 < ... < s_k`` (``s_k`` the final exit),
``cost = sum_j p(j-1) * (chunks(s_{j-1}, s_j] + head(s_j))``, ``p(0) = 1``, ``p(j)`` the fraction
of images still running after the ``j``-th kept exit. A dropped exit's chunk still runs (it is
part of the next kept exit's backbone); only its head disappears.

Candidate heads (MESS exit-architecture search): a package may offer several heads at one exit
*point* (``Costs.point``). The backbone chunk belongs to the point, not to a head: it runs once,
whichever head is kept, so ``chunks(s_{j-1}, s_j]`` sums the chunks of the points after
``s_{j-1}``'s point up to ``s_j``'s. An *architecture* is a kept-exit subset with at most one
exit per point that holds the final exit (:func:`architectures`); without candidates every exit
is its own point and the architectures are today's kept-exit subsets, in the same order.

The search, per architecture (kept-exit subset), is :mod:`~mesc.calibration.exits.search_thresholds`:
each non-final exit's options are the pairs (grid index ``g``, ``th_img``) of
:mod:`~mesc.calibration.exits.search_options` (``th_img`` over up to ``th_img_steps`` thresholds
placed *between* distinct observed ``c_img`` values at evenly spaced pass fractions; options with
the same pass set merged), every combination evaluated where their product is at most
``exhaustive_limit``, else a coordinate descent. Over architectures,
:mod:`~mesc.calibration.exits.search_space` searches them all, skipping by the bounds of
:mod:`~mesc.calibration.exits.search_bounds` only what cannot beat the best found: the same
optimum as the brute force (``prune=False``), at the paper's space sizes.

Every evaluated point (expected cost, mIoU) is kept for the Pareto plot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mesc.calibration.exits.search_options import ExitOptions
from mesc.calibration.exits.search_results import (
    Configuration,
    InfeasibleBound,
    SearchResult,
    meets_bound,
    pareto_front,
)
from mesc.calibration.exits.search_space import ArchitectureSearch, Space, architectures
from mesc.errors import MescError
from mesc.evaluation.metrics import miou
from mesc.policy import POLICY_KINDS, get_kind


# ---------------------------------------------------------------------------------------------
# costs

@dataclass
class Costs:
    """Per-exit cost: ``chunk[e]`` = backbone segments first needed by exit ``e``, ``head[e]``.

    ``point[e]``: exit ``e``'s exit point (non-decreasing; default: its position, every exit its
    own point). Exits sharing a point are candidate heads on one backbone chunk: the chunks of a
    point's exits are that point's chunk, paid once whichever of its heads runs."""

    chunk: np.ndarray
    head: np.ndarray
    unit: str = "MFLOPs"
    source: str = "flops"
    # per exit: what runs only for the images leaving there (its tail segment: upsampling, labels)
    tail: np.ndarray | None = None
    point: np.ndarray | None = None

    def __post_init__(self):
        self.chunk = np.asarray(self.chunk, dtype=np.float64)
        self.head = np.asarray(self.head, dtype=np.float64)
        self.tail = np.zeros_like(self.head) if self.tail is None else np.asarray(self.tail, dtype=np.float64)
        if self.chunk.shape != self.head.shape or self.chunk.ndim != 1 or self.tail.shape != self.head.shape:
            raise MescError("costs: chunk, head and tail must be 1-d arrays of the same length")
        self.point = np.arange(len(self.head)) if self.point is None else np.asarray(self.point)
        if self.point.shape != self.head.shape or not np.issubdtype(self.point.dtype, np.integer):
            raise MescError(f"costs: point must give one integer exit point per exit ({len(self.head)}), "
                            f"got {self.point.tolist()}")
        if len(self.point) and ((np.diff(self.point) < 0).any() or (self.point == self.point[-1]).sum() != 1):
            raise MescError(f"costs: exit points must be non-decreasing with one head at the final point, "
                            f"got {self.point.tolist()}")

    @property
    def has_candidates(self) -> bool:
        """Whether some exit point offers more than one head."""
        return len(np.unique(self.point)) < len(self.point)

    def first_heads(self) -> np.ndarray:
        """Per exit: whether it is its point's first head (candidate 0, what an uncalibrated
        package runs)."""
        return np.r_[True, self.point[1:] != self.point[:-1]] if len(self.point) else np.zeros(0, bool)

    def _chunks(self, after_point, to_point) -> float:
        """The chunks of the points in (``after_point``, ``to_point``]."""
        return float(self.chunk[(self.point > after_point) & (self.point <= to_point)].sum())

    def subset_segment_costs(self, kept) -> np.ndarray:
        """Cost of reaching kept exit j from kept exit j-1 and running its head."""
        out, prev = [], -1
        for e in kept:
            out.append(self._chunks(prev, self.point[e]) + self.head[e])
            prev = self.point[e]
        return np.asarray(out)

    def budgeted(self, e: int) -> float:
        """Cost of always taking exit ``e`` (only its head runs)."""
        return float(self._chunks(-1, self.point[e]) + self.head[e] + self.tail[e])

    def anytime(self, e: int) -> float:
        """Cost of running every exit point in turn up to and including ``e``'s: the first head
        of every earlier point, then ``e``'s own."""
        run = self.first_heads() & (self.point < self.point[e])
        run[e] = True
        return self._chunks(-1, self.point[e]) + float(self.head[run].sum()) + float(self.tail[run].sum())

    def manifest_dependencies(self) -> list:
        """The manifest entries these costs were read from, as ``Package.save(depends_on=)`` key
        paths: the latency entry used, or with FLOPs the whole latency map (a latency recorded
        meanwhile would have been used instead)."""
        if self.source.startswith("latency:"):
            return [("latency", self.source[len("latency:"):])]
        return [("latency",)]

    def expected(self, kept, remaining, counts, n: int) -> np.ndarray:
        """MESS expected cost: every image still undecided before kept exit j pays its chunk and
        head; only the images leaving at j pay its tail."""
        kept = list(kept)
        return (remaining / n) @ self.subset_segment_costs(kept) + (counts / n) @ self.tail[kept]


def costs_from_package(pkg, latency_key: str | None = None) -> Costs:
    """Per-exit costs from a :class:`mesc.package.Package`.

    Measured latencies (:attr:`Package.latency`, ms per segment, written by
    ``mesc bench --record``) are used when present for every segment, else FLOPs (as MFLOPs).
    ``latency_key`` picks among several recorded backends/devices (default: the only one, or
    the first in sorted order).
    """
    lat_all = pkg.latency
    lat, key = None, None
    # The entry segment (uint8 normalisation) runs before every exit alike: counted with the first
    # chunk where its cost is known, but a latency record need not have it (one written by hand or
    # before entries existed); without, it counts 0, which changes no choice of exits.
    segments = [s for s in pkg.segments if s.kind != "entry"]
    if latency_key is not None:
        if latency_key not in lat_all:
            raise MescError(f"no latency recorded under '{latency_key}'; the package has "
                            f"{sorted(lat_all) or 'none'} (run 'mesc bench --record')")
        key = latency_key
    elif lat_all:
        key = sorted(lat_all)[0]
    if key is not None:
        cand = lat_all[key]
        if cand.covers(segments):
            lat = cand.ms
        elif latency_key is not None:
            missing = cand.missing(segments)
            raise MescError(f"latency '{key}' lacks segments {missing}; re-run 'mesc bench --record'")

    seen: set[str] = set()
    chunk, head, tail = [], [], []
    for ex in pkg.exits:
        segs = pkg.segments_until(ex.name)
        c = h = t = 0.0
        for s in segs:
            v = float(lat.get(s.name, 0.0)) if lat is not None else float(s.flops or 0) / 1e6
            if s.name == ex.segment:
                h += v
            elif s.name == ex.tail:
                t += v
            elif s.kind in ("entry", "chunk") and s.name not in seen:
                c += v
                seen.add(s.name)
        chunk.append(c)
        head.append(h)
        tail.append(t)
    point = [ex.point for ex in pkg.exits]
    if lat is not None:
        return Costs(chunk, head, unit="ms", source=f"latency:{key}", tail=tail, point=point)
    if not any(chunk) and not any(head):
        raise MescError("the package records neither latencies nor FLOPs; run 'mesc bench --record'")
    return Costs(chunk, head, unit="MFLOPs", source="flops", tail=tail, point=point)


class Searcher:
    """Vectorised evaluation and search over one calibration memo."""

    def __init__(self, inter, union, conf, costs: Costs, exit_names=None, th_pix_grid=None,
                 policy: str = "mess", th_img_steps: int = 50):
        self.inter = np.asarray(inter, dtype=np.float64)
        self.union = np.asarray(union, dtype=np.float64)
        self.conf = np.asarray(conf, dtype=np.float64)
        if self.conf.ndim == 2:
            self.conf = self.conf[:, :, None]
        n, e, c = self.inter.shape
        if self.union.shape != (n, e, c) or self.conf.shape[:2] != (n, e):
            raise MescError(f"memo arrays disagree: inter {self.inter.shape}, union {self.union.shape}, "
                            f"conf {self.conf.shape}")
        if len(costs.chunk) != e:
            raise MescError(f"costs cover {len(costs.chunk)} exits, the memo {e}")
        if n == 0:
            raise MescError("no calibration images")
        self.n, self.e = n, e
        self.costs = costs
        self.names = list(exit_names) if exit_names is not None else [f"exit{i}" for i in range(e)]
        self.grid = None if th_pix_grid is None else np.asarray(th_pix_grid, dtype=np.float64)
        self.policy = policy
        self.kind = get_kind(policy).comparison  # "ge" or "range"
        self.pixel_threshold = get_kind(policy).pixel_threshold
        self.options = [ExitOptions(self.conf[:, i, :], th_img_steps, self.kind) for i in range(e - 1)]
        self.evaluated = 0
        self.visited = 0
        self._pts: list = []
        self._pts_sub: list = []
        self._n_pts = 0
        self.points_thinned = False

    # evaluation ----------------------------------------------------------------------------
    def evaluate(self, kept, passes: np.ndarray, subset_id: int = -1, record: bool = True):
        """``passes``: (K, k-1, N) bools, the non-final kept exits' decisions for K configurations.

        Returns (cost (K,), mIoU (K,), counts (K, k)); ``record`` keeps them for the Pareto plot.
        """
        kept = list(kept)
        n_kept = len(kept)
        passes = np.asarray(passes, dtype=bool)
        n_configs = passes.shape[0]
        taken = np.zeros((n_configs, self.n), dtype=bool)
        inter = np.zeros((n_configs, self.inter.shape[2]))
        union = np.zeros_like(inter)
        counts = np.zeros((n_configs, n_kept))
        for slot, exit_index in enumerate(kept):
            leaving = ~taken if slot == n_kept - 1 else passes[:, slot] & ~taken
            leaving_f = leaving.astype(np.float64)
            inter += leaving_f @ self.inter[:, exit_index, :]
            union += leaving_f @ self.union[:, exit_index, :]
            counts[:, slot] = leaving_f.sum(1)
            taken |= leaving
        remaining = self.n - np.concatenate([np.zeros((n_configs, 1)), np.cumsum(counts, 1)[:, :-1]], 1)
        cost = self.costs.expected(kept, remaining, counts, self.n)
        mi = miou(inter, union)
        if record:
            self.visited += n_configs
            self._record(cost, mi, subset_id)
        return cost, mi, counts

    # the evaluated configurations kept for the Pareto plot: 12 bytes each, so past this many the
    # cloud is thinned (the front of everything seen always kept): at most ~12 MB however large the space
    max_points = 1_000_000

    def _record(self, cost, mi, subset_id):
        self.evaluated += len(cost)
        self._pts.append(np.stack([cost, mi], 1).astype(np.float32))
        self._pts_sub.append(np.full(len(cost), subset_id, dtype=np.int32))
        self._n_pts += len(cost)
        if self._n_pts > self.max_points:
            pts, sub = np.concatenate(self._pts), np.concatenate(self._pts_sub)
            front = pareto_front(pts)
            rest = np.setdiff1d(np.arange(len(pts)), front)
            rest = rest[::max(1, 2 * len(rest) // self.max_points)]
            keep = np.sort(np.concatenate([front, rest]))
            self._pts, self._pts_sub, self._n_pts = [pts[keep]], [sub[keep]], len(keep)
            self.points_thinned = True

    def _coordinate(self, kept, choice, j: int):
        """With the other exits fixed at ``choice``, an image either leaves at one of the exits
        before ``j`` (fixed), or at ``j`` if it passes there, or else at a fixed later exit ``t(n)``;
        so every option of ``j``'s summed counts are a constant plus one matrix product of its
        pass rows with the per-image difference (exit ``j`` minus exit ``t(n)``). Returns the
        constants (inter, union, counts) and the per-image differences (N, C), (N, C), (N, k)."""
        kept = list(kept)
        n_kept, n = len(kept), self.n
        images = np.arange(n)
        rows = {slot: self.options[kept[slot]].rows[choice[slot]] for slot in range(n_kept - 1) if slot != j}
        before = np.full(n, -1)
        for slot in range(j - 1, -1, -1):        # first passing exit before j
            before = np.where(rows[slot], slot, before)
        after = np.full(n, n_kept - 1)
        for slot in range(n_kept - 2, j, -1):    # first passing exit after j (else the final)
            after = np.where(rows[slot], slot, after)
        reach_j = before < 0
        fallback = np.where(reach_j, after, before)  # where each image leaves if nothing passes at j
        fallback_exit = np.asarray(kept)[fallback]
        base = (self.inter[images, fallback_exit].sum(0), self.union[images, fallback_exit].sum(0),
                np.bincount(fallback, minlength=n_kept).astype(np.float64))
        exit_j, exit_after = kept[j], np.asarray(kept)[after]
        d_inter = self.inter[:, exit_j] - self.inter[images, exit_after]
        d_union = self.union[:, exit_j] - self.union[images, exit_after]
        d_counts = np.zeros((n, n_kept))
        d_counts[images, j] += 1.0
        d_counts[images, after] -= 1.0
        for d in (d_inter, d_union, d_counts):
            d[~reach_j] = 0.0
        return base, (d_inter, d_union, d_counts)

    def _coordinate_cost(self, kept, counts):
        remaining = self.n - np.concatenate([np.zeros((len(counts), 1)), np.cumsum(counts, 1)[:, :-1]], 1)
        return self.costs.expected(list(kept), remaining, counts, self.n)

    def evaluate_coordinate(self, kept, choice, j: int, subset_id: int = -1):
        """All options of kept exit ``j`` (non-final) with the others fixed at ``choice``
        (:meth:`_coordinate`). Returns (cost (O,), mIoU (O,), counts (O, k))."""
        base, delta = self._coordinate(kept, choice, j)
        change = self.options[kept[j]].sums(np.concatenate(delta, 1))
        c = base[0].shape[0]
        inter, union = base[0] + change[:, :c], base[1] + change[:, c:2 * c]
        counts = base[2] + change[:, 2 * c:]
        cost = self._coordinate_cost(kept, counts)
        mi = miou(inter, union)
        self.visited += len(cost)
        self._record(cost, mi, subset_id)
        return cost, mi, counts

    def evaluate_coordinate_capped(self, kept, choice, j: int, cap: float, subset_id: int = -1):
        """As :meth:`evaluate_coordinate`, the cost first (from the exit counts alone) and the
        mIoU only of the options costing at most ``cap``. Returns (their indices, cost, mIoU)."""
        base, (d_inter, d_union, d_counts) = self._coordinate(kept, choice, j)
        opt = self.options[kept[j]]
        counts = base[2] + opt.sums(d_counts)
        cost = self._coordinate_cost(kept, counts)
        self.visited += len(cost)
        idx = np.flatnonzero(cost <= cap)
        if not len(idx):
            return idx, cost[idx], np.zeros(0)
        change = opt.sums(np.concatenate([d_inter, d_union], 1), idx)
        c = base[0].shape[0]
        mi = miou(base[0] + change[:, :c], base[1] + change[:, c:])
        self._record(cost[idx], mi, subset_id)
        return idx, cost[idx], mi

    def _passes(self, kept, choice) -> np.ndarray:
        """(K, k-1, N) from option indices ``choice`` (K, k-1)."""
        choice = np.atleast_2d(choice)
        if len(kept) == 1:
            return np.zeros((choice.shape[0], 0, self.n), dtype=bool)
        return np.stack([self.options[e].rows[choice[:, j]] for j, e in enumerate(kept[:-1])], 1)

    def configuration(self, kept, choice, mode="input-dependent", record: bool = True,
                      subset_id: int = -1) -> Configuration:
        kept = list(kept)
        choice = np.asarray(choice, dtype=int).reshape(-1)
        cost, mi, counts = self.evaluate(kept, self._passes(kept, choice[None]), subset_id, record)
        th_pix, th_img, thresholds = {}, {}, {}
        for j, e in enumerate(kept):
            name = self.names[e]
            if j == len(kept) - 1:
                th_pix[name], th_img[name], thresholds[name] = None, 0.0, {}
                continue
            opt = self.options[e]
            o = choice[j]
            g = int(opt.g[o])
            th_pix[name] = None if self.grid is None or g < 0 else float(self.grid[g])
            a, b = (float(x) for x in opt.th[o])
            if self.kind == "range":
                th_img[name] = None
                thresholds[name] = {"lo": a, "hi": b}
            else:
                th_img[name] = a if np.isfinite(a) else None
                thresholds[name] = {"th_pix": th_pix[name], "th_img": th_img[name]} if self.pixel_threshold \
                    else {"th": th_img[name]}
        return Configuration(
            mode=mode, exits=[self.names[e] for e in kept], th_pix=th_pix, th_img=th_img,
            expected_cost=float(cost[0]), miou=float(mi[0]),
            exit_fraction={self.names[e]: float(counts[0, j] / self.n) for j, e in enumerate(kept)},
            unit=self.costs.unit, policy=self.policy, thresholds=thresholds)

    def assess(self, cfg: Configuration) -> Configuration:
        """``cfg``'s thresholds applied to this searcher's images (e.g. a held-out split): the
        same Configuration with this set's expected cost, mIoU and exit distribution."""
        kept, passes = self.decisions(cfg)
        cost, mi, counts = self.evaluate(kept, passes)
        return Configuration(mode=cfg.mode, exits=list(cfg.exits), th_pix=dict(cfg.th_pix), th_img=dict(cfg.th_img),
                             expected_cost=float(cost[0]), miou=float(mi[0]),
                             exit_fraction={self.names[e]: float(counts[0, j] / self.n) for j, e in enumerate(kept)},
                             unit=self.costs.unit, policy=cfg.policy, thresholds=dict(cfg.thresholds))

    def decisions(self, cfg: Configuration):
        """``cfg`` on this searcher's images: (kept exit indices, passes (1, k-1, N)), the
        non-final kept exits' leave-or-continue decisions as :meth:`evaluate` takes them."""
        kept = [self.names.index(e) for e in cfg.exits]
        passes = np.zeros((1, len(kept) - 1, self.n), dtype=bool)
        for j, e in enumerate(kept[:-1]):
            name = self.names[e]
            th = cfg.thresholds.get(name) or {}
            if cfg.policy in POLICY_KINDS and get_kind(cfg.policy).pixel_threshold:  # (a report's kind may be gone)
                if cfg.th_img.get(name) is None:
                    continue
                if self.grid is None or not np.isclose(self.grid, cfg.th_pix[name]).any():
                    raise MescError(f"th_pix {cfg.th_pix[name]} of {name} is not on this memo's grid")
                g = int(np.argmin(np.abs(self.grid - cfg.th_pix[name])))
                passes[0, j] = self.conf[:, e, g] >= cfg.th_img[name]
            elif "lo" in th:
                v = self.conf[:, e, 0]
                passes[0, j] = (v >= th["lo"]) & (v <= th["hi"])
            elif th.get("th") is not None:
                passes[0, j] = self.conf[:, e, 0] >= th["th"]
        return kept, passes

    # fixed settings -----------------------------------------------------------------------
    def reference(self) -> Configuration:
        return self.configuration([self.e - 1], np.zeros(0, dtype=int), subset_id=-2 - (self.e - 1))

    def budgeted(self) -> list:
        out = []
        for e in range(self.e):
            mi = float(miou(self.inter[:, e].sum(0), self.union[:, e].sum(0)))
            cost = self.costs.budgeted(e)
            self._pts.append(np.array([[cost, mi]], dtype=np.float32))
            self._pts_sub.append(np.full(1, -2 - e, dtype=np.int32))
            out.append(Configuration(mode="budgeted", exits=[self.names[e]], th_pix={self.names[e]: None},
                                     th_img={self.names[e]: 0.0}, expected_cost=cost, miou=mi,
                                     exit_fraction={self.names[e]: 1.0}, unit=self.costs.unit,
                                     policy=self.policy))
        return out

    def anytime(self) -> list:
        return [{"exit": self.names[e], "cost": self.costs.anytime(e),
                 "miou": float(miou(self.inter[:, e].sum(0), self.union[:, e].sum(0)))}
                for e in range(self.e)]

    # the search ---------------------------------------------------------------------------
    def search(self, max_drop: float | None = None, max_cost: float | None = None,
               exhaustive_limit: int = 200_000, subsets=None, progress=None, prune: bool = True) -> SearchResult:
        """Minimise expected cost subject to mIoU >= final-only mIoU - ``max_drop`` (percentage
        points), or maximise mIoU subject to expected cost <= ``max_cost`` (cost units), over
        ``subsets`` (default: every architecture of the exit points). ``prune=False`` searches
        every architecture in full (the brute force the pruned search equals; every architecture
        then has its best in ``by_subset``)."""
        if (max_drop is None) == (max_cost is None):
            raise MescError("give exactly one bound: --max-drop PP or --max-cost COST")
        t0 = time.perf_counter()
        self._pts, self._pts_sub, self._n_pts = [], [], 0  # this search's points only
        ref = self.reference()
        if max_drop is not None:
            if not max_drop >= 0:
                raise MescError(f"--max-drop must be >= 0 percentage points, got {max_drop}")
            objective, bound = "max-drop", ref.miou - max_drop / 100.0
        else:
            if not max_cost > 0:
                raise MescError(f"--max-cost must be positive, got {max_cost}")
            objective, bound = "max-cost", float(max_cost)
        budgeted = self.budgeted()
        space = Space(self.costs.point, subsets)
        run = ArchitectureSearch(self, space, objective, bound, ref.miou, exhaustive_limit, prune, progress)
        self.last_run = run  # what a search cut off by its caller (an exception from progress) had done
        best, fixed = run.run()
        # the architectures searched, in the brute force's order; the recorded points follow
        order = sorted(range(len(run.found)), key=lambda i: space.rank(run.found[i][0]))
        found = [run.found[i] for i in order]
        new_id = np.zeros(len(order), dtype=np.int32)
        new_id[order] = np.arange(len(order), dtype=np.int32)
        searched = [tuple(f[0]) for f in found]
        for i in range(len(self._pts_sub)):  # search-order ids -> positions in ``searched``
            ids = self._pts_sub[i].copy()
            ids[ids >= 0] = new_id[ids[ids >= 0]]
            self._pts_sub[i] = ids
        old = next(i for i, f in enumerate(run.found) if f[0] == best.kept)
        conf = self.configuration(best.kept, best.res[2], subset_id=int(new_id[old]))
        meets = lambda c: meets_bound(c, objective, bound)  # noqa: E731
        feasible = meets(conf)
        first = self.costs.first_heads()
        by_subset, exhaustive = [], {}
        for kept, res, seconds, exh, capped in found:
            c = None if res is None else self.configuration(kept, res[2], record=False)
            exhaustive[tuple(kept)] = exh
            by_subset.append({"best": c, "feasible": c is not None and meets(c), "exhaustive": exh,
                              "seconds": seconds, "fixed_heads": bool(first[kept].all()), "capped": capped})
        fixed_best = None if fixed.res is None else self.configuration(fixed.kept, fixed.res[2], record=False)
        ok = [c for c in budgeted if meets(c)]
        if objective == "max-drop":
            budgeted_best = min(ok, key=lambda c: c.expected_cost) if ok else None
            anytime_best = None
        else:
            budgeted_best = max(ok, key=lambda c: c.miou) if ok else None
            reach = [(int(self.costs.point[e]), a["miou"], e) for e, a in enumerate(self.anytime())
                     if a["cost"] <= bound * (1 + 1e-9)]
            # the deepest point reached; among its candidate heads the most accurate
            anytime_best = self.anytime()[max(reach)[2]] if reach else None
        pts = np.concatenate(self._pts) if self._pts else np.zeros((0, 2), np.float32)
        sub = np.concatenate(self._pts_sub) if self._pts_sub else np.zeros(0, np.int32)
        result = SearchResult(best=conf, reference=ref, budgeted=budgeted, anytime=self.anytime(),
                              points=pts, point_subsets=sub, subsets=[list(s) for s in searched],
                              objective=objective, bound=bound, exhaustive=exhaustive,
                              budgeted_best=budgeted_best, anytime_best=anytime_best,
                              seconds=time.perf_counter() - t0, evaluated=self.evaluated,
                              by_subset=by_subset, fixed_heads_best=fixed_best,
                              space=dict(run.stats(), visited=self.visited))
        if not feasible:
            cheapest = min(budgeted, key=lambda c: c.expected_cost)
            cheapest_cost = float(pts[:, 0].min()) if len(pts) else cheapest.expected_cost
            raise InfeasibleBound(
                f"no configuration meets --max-cost {max_cost:g} {self.costs.unit}: the cheapest "
                f"expected cost found is {cheapest_cost:.4g} {self.costs.unit} "
                f"(every image at {cheapest.exits[0]}: {cheapest.expected_cost:.4g} {self.costs.unit}, "
                f"mIoU {100 * cheapest.miou:.2f}%); the final exit alone costs "
                f"{ref.expected_cost:.4g} {self.costs.unit}", result)
        return result


def search(inter, union, conf, costs: Costs, max_drop=None, max_cost=None, exit_names=None,
           th_pix_grid=None, policy="mess", th_img_steps=50, exhaustive_limit=200_000,
           subsets=None, progress=None, prune: bool = True) -> SearchResult:
    """Convenience wrapper: build a :class:`Searcher` and run :meth:`Searcher.search`."""
    s = Searcher(inter, union, conf, costs, exit_names=exit_names, th_pix_grid=th_pix_grid, policy=policy,
                 th_img_steps=th_img_steps)
    return s.search(max_drop=max_drop, max_cost=max_cost, exhaustive_limit=exhaustive_limit,
                    subsets=subsets, progress=progress, prune=prune)


__all__ = ["Costs", "Configuration", "SearchResult", "Searcher", "InfeasibleBound", "architectures", "meets_bound",
           "costs_from_package", "pareto_front", "search"]
