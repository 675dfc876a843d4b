"""Per exit: the distinct leave-or-continue decisions its thresholds can make on the calibration
set (pass sets), and the thresholds that give each; the threshold search's options."""

from __future__ import annotations

import numpy as np


def cuts(v: np.ndarray, steps: int) -> np.ndarray:
    """Up to ``steps`` thresholds t for the decision ``v >= t``, passing evenly spaced numbers
    of images; each lies midway between two distinct observed values (the lowest passes all)."""
    n = len(v)
    vals, cnt = np.unique(v, return_counts=True)
    u, passes = vals[::-1], np.cumsum(cnt[::-1])  # a cut just below u[k] passes passes[k]
    targets = np.linspace(0, n, steps + 1)[1:]
    ks = np.unique(np.clip(np.searchsorted(passes, targets, side="left"), 0, len(u) - 1))
    low = min(0.0, float(u[-1])) if u[-1] >= 0 else float(u[-1])
    return np.array([low if k == len(u) - 1 else 0.5 * (u[k] + u[k + 1]) for k in ks])


class ExitOptions:
    """The distinct exit decisions of one exit: pass sets and the thresholds giving each.

    ``kind="ge"``: leave when ``score[g] >= t`` (MESS: ``g`` indexes th_pix, ``t`` is th_img;
    single-score policies: ``G = 1``). ``kind="range"``: leave when ``lo <= score <= hi`` (the
    thesis' FFT policy). Option 0 is "never leave here".
    """

    def __init__(self, conf_e: np.ndarray, steps: int, kind: str = "ge"):
        n, g_count = conf_e.shape
        g_idx, ths, rows = [-1], [(np.nan, np.nan)], [np.zeros(n, dtype=bool)]
        for g in range(g_count):
            v = conf_e[:, g].astype(np.float64)
            if kind == "ge":
                for t in cuts(v, steps):
                    g_idx.append(g)
                    ths.append((t, np.nan))
                    rows.append(v >= t)
            elif kind == "range":
                los = cuts(v, steps)
                his = -cuts(-v, steps)
                # the cut passing every image lies on the largest score: one the graph computes a
                # float32 rounding higher would fall out of the range, so it passes every score
                his[his >= v.max()] = np.finfo(np.float32).max
                for lo in los:
                    for hi in his[his > lo]:
                        g_idx.append(g)
                        ths.append((lo, hi))
                        rows.append((v >= lo) & (v <= hi))
            else:
                raise ValueError(kind)
        rows = np.stack(rows)
        _, first = np.unique(rows, axis=0, return_index=True)
        first = np.sort(first)
        self.rows = rows[first]
        self.g = np.asarray(g_idx)[first]
        self.th = np.asarray(ths, dtype=np.float64)[first]
        # "ge": each setting's pass sets are nested, the images in descending score order up to a
        # count, so a sum over any pass set is a prefix sum over that order (see ``sums``)
        self.nested = kind == "ge"
        if self.nested:
            self._segments(conf_e)

    def _segments(self, conf_e) -> None:
        """Per setting ``g``, the images in descending score order cut at the options' pass
        counts: segment sums added up give any option's sum (``sums``)."""
        n, g_count = conf_e.shape
        order = np.argsort(-conf_e.astype(np.float64).T, axis=1, kind="stable")  # (G, N)
        self.flat = order.ravel()
        count = self.rows.sum(1)
        starts, self.first, self.last = [], np.zeros(len(self), int), np.zeros(len(self), int)
        for g in range(g_count):
            mine = np.flatnonzero((self.g == g) & (count > 0))
            cuts_g = np.unique(count[mine])
            self.first[mine] = len(starts)
            self.last[mine] = len(starts) + np.searchsorted(cuts_g, count[mine])
            starts += [g * n] + [g * n + c for c in cuts_g if c < n]
        self.starts = np.asarray(starts, dtype=np.intp)
        self.empty = count == 0  # "never" (and any setting passing no image)

    def __len__(self):
        return len(self.rows)

    def sums(self, values: np.ndarray, rows=None) -> np.ndarray:
        """``rows_f[rows] @ values`` (values: N x D): per option, the sum of ``values`` over its
        pass set. Nested options take it from prefix sums in each setting's score order:
        G x N x D additions instead of O x N x D (O ~ 1000 options, G ~ 20 settings), and for
        integer counts, as the memo's are, the same float64 values to the last bit."""
        if not self.nested:
            return (self.rows_f if rows is None else self.rows[rows].astype(np.float64)) @ values
        if not len(self.starts):
            return np.zeros((len(self) if rows is None else len(rows), values.shape[1]))
        seg = np.add.reduceat(values[self.flat], self.starts, axis=0)
        total = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(seg, axis=0)])
        first, last, empty = self.first, self.last, self.empty
        if rows is not None:
            first, last, empty = first[rows], last[rows], empty[rows]
        out = total[last + 1] - total[first]
        out[empty] = 0.0
        return out

    @property
    def rows_f(self) -> np.ndarray:
        """The pass rows as float64 for the memo products, made on use: kept for every candidate
        head of a large space they would take 8 bytes per option and image each (64 heads x 6
        points x 1000 options x 500 images: 1.5 GB), the bool rows one."""
        return self.rows.astype(np.float64)

    def row_set(self) -> set:
        """The pass sets as hashable bytes (for the dominance test between candidate heads)."""
        return {r.tobytes() for r in np.packbits(self.rows, axis=1)}


__all__ = ["ExitOptions", "cuts"]
