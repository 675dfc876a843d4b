"""Thresholds with a guarantee: ``mesc calibrate --max-drop PP --risk DELTA`` (Learn then Test).

Plain calibration picks the cheapest configuration whose mIoU drop *on the calibration set* is
within the bound; on new images it overshoots about half the time. Here the choice is made so
that, with probability at least ``1 - DELTA`` over the draw of the calibration set, the expected
per-image loss below stays within the bound on new images from the same distribution: Learn then
Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021, arXiv 2110.01052) with fixed-sequence
testing and the Waudby-Smith–Ramdas betting p-value.

1. **Order** (:func:`configuration_order`): the calibration images are split at random (fixed
   seed) into an *order* part and a *test* part. On the order part: the final exit alone, then
   for ``steps`` expected costs from its cost down to that of the plain choice for
   ``span * max_drop``, the most accurate configuration within each cost (duplicates dropped):
   the fixed sequence, safe to aggressive. The test part is not looked at to make it.
2. **Loss** (:class:`LossScale`): mIoU is a ratio of dataset sums, not a mean over images, so it
   is bounded through each image's *share of the linearised drop*. With the final exit's class
   IoU ``r_c`` and mean union per image ``u_c`` (both measured on the order part, so the loss is
   a fixed function on the test part)::

       loss(n) = 1/|K| * sum_{c in K} [(I_final[n,c] - I_taken[n,c]) + r_c (U_taken[n,c] - U_final[n,c])] / u_c

   Summed over a set, the numerator is exactly the change of ``sum I - r_c sum U``; so the mean
   loss equals the dataset mIoU drop up to second order (exact where the early exits leave each
   class' union unchanged). It controls the drop *empirically*, not provably: the benchmark
   (``python -m mesc.benchmarks.risk``) measures both on the demo. Negative shares (an image
   the early exit segments better) count, down to ``LOSS_RANGE[0]``; shares above
   ``LOSS_RANGE[1]`` are clipped there and counted in the result (``clipped``), since the test
   needs a bounded loss.
3. **Test** (:func:`learn_then_test`): per configuration the null "expected loss > bound" gets
   the WSR p-value on the test part (:func:`wsr_p_value`); fixed-sequence testing walks the order
   and stops at the first p-value above DELTA (family-wise error <= DELTA without correction).
   Among the configurations that passed, the cheapest on the whole calibration set is chosen;
   none passing leaves the final exit alone, which has loss 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mesc.calibration.exits.search import Configuration, Searcher
from mesc.errors import CalibrationError

# the per-image loss is clipped to this range (mIoU units) for the betting test; see the docstring
LOSS_RANGE = (-0.25, 0.5)
LOSS_NAME = "per-image share of the linearised mIoU drop (empirical control)"
ORDER_FRACTION = 0.25  # of the calibration images that fix the order and the loss scale
ORDER_STEPS = 16       # cost levels between the final exit alone and the anchor
ORDER_TH_IMG_STEPS = 20  # th_img values per exit and th_pix on the (small) order part: exhaustive search
ORDER_SPAN = 1.5       # the anchor: the plain choice on the order part for span x max_drop
METHOD = ("Learn then Test (Angelopoulos et al. 2021), fixed-sequence testing, "
          "Waudby-Smith-Ramdas betting p-values")


def check_risk(delta, max_cost=None) -> None:
    """Refuse ``--risk`` values and combinations before anything is loaded."""
    if delta is None:
        return
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool) and math.isfinite(delta)
            and 0 < delta < 1):
        raise CalibrationError(f"--risk must be a probability strictly between 0 and 1 (e.g. 0.1: the bound "
                               f"holds on new images with probability >= 0.9), got {delta!r}")
    if max_cost is not None:
        raise CalibrationError("--risk bounds the mIoU drop; it goes with --max-drop PP, not --max-cost "
                               "(a cost bound needs no statistical guarantee: costs are known in advance)")


# ---------------------------------------------------------------------------------------------
# the loss

def exits_taken(kept, passes) -> np.ndarray:
    """Per image, the exit index it leaves at: the first kept exit whose decision passes, else
    the final kept exit. ``passes`` as :meth:`Searcher.decisions` returns it, (1, k-1, N)."""
    passes = np.asarray(passes, dtype=bool)[0]
    slot = np.full(passes.shape[1], len(kept) - 1)
    for j in range(len(kept) - 2, -1, -1):
        slot = np.where(passes[j], j, slot)
    return np.asarray(kept)[slot]


@dataclass
class LossScale:
    """What the per-image loss is measured in: the final exit's class IoU and mean union per
    image on the images it was fitted on; classes with no union there are not counted."""

    final: int
    iou: np.ndarray
    mean_union: np.ndarray

    @classmethod
    def fit(cls, inter, union) -> "LossScale":
        inter = np.asarray(inter, dtype=np.float64)
        union = np.asarray(union, dtype=np.float64)
        final = inter.shape[1] - 1
        i, u = inter[:, final].sum(0), union[:, final].sum(0)
        present = u > 0
        if not present.any():
            raise CalibrationError("no class has a labelled or predicted pixel at the final exit: the mIoU "
                                   "drop is undefined")
        iou = np.where(present, i / np.where(present, u, 1.0), 0.0)
        return cls(final, iou, np.where(present, u / len(inter), 0.0))

    def losses(self, inter, union, taken) -> np.ndarray:
        """Unclipped per-image shares (mIoU units) for images leaving at ``taken`` (N,)."""
        inter = np.asarray(inter, dtype=np.float64)
        union = np.asarray(union, dtype=np.float64)
        rows = np.arange(len(taken))
        d_inter = inter[:, self.final] - inter[rows, taken]
        d_union = union[rows, taken] - union[:, self.final]
        counted = self.mean_union > 0
        share = (d_inter + self.iou * d_union)[:, counted] / self.mean_union[counted]
        return share.sum(1) / counted.sum()


# ---------------------------------------------------------------------------------------------
# the test

def _unit(loss, bound):
    """Loss and bound mapped from LOSS_RANGE onto [0, 1], the loss clipped there."""
    lo, hi = LOSS_RANGE
    return (np.clip(loss, lo, hi) - lo) / (hi - lo), (bound - lo) / (hi - lo)


def wsr_p_value(losses, bound: float, delta: float) -> np.ndarray:
    """Waudby-Smith–Ramdas p-values for the nulls "expected loss > bound", one per row of
    ``losses`` (K, n) (or one row), losses in mIoU units clipped to :data:`LOSS_RANGE`.

    The capital ``prod_i (1 - nu_i (x_i - bound))`` of a bettor against the null is a
    nonnegative supermartingale under it, so by Ville's inequality ``1 / max capital`` is a
    valid p-value; ``nu_i`` is the predictable plug-in the LTT paper takes from Waudby-Smith and
    Ramdas ("Estimating means of bounded random variables by betting", arXiv 2010.09686), with
    the running mean and variance started at 1/2 and 1/4.
    """
    x, a = _unit(np.atleast_2d(np.asarray(losses, dtype=np.float64)), bound)
    k, n = x.shape
    if n == 0:
        return np.ones(k)
    i = np.arange(1, n + 1)
    mu = (0.5 + np.cumsum(x, 1)) / (1 + i)
    var = (0.25 + np.cumsum((x - mu) ** 2, 1)) / (1 + i)
    var_before = np.concatenate([np.full((k, 1), 0.25), var[:, :-1]], 1)
    nu = np.minimum(1.0, np.sqrt(2 * np.log(1 / delta) / (n * var_before)))
    log_capital = np.cumsum(np.log1p(-nu * (x - a)), 1)
    return np.minimum(1.0, np.exp(-log_capital.max(1)))


def fixed_sequence(p_values, delta: float) -> int:
    """How many hypotheses fixed-sequence testing rejects: it walks them in order and stops at
    the first p-value above ``delta``."""
    above = np.flatnonzero(np.asarray(p_values) > delta)
    return int(above[0]) if len(above) else len(p_values)


def images_needed(bound: float, delta: float, limit: int = 1_000_000) -> int | None:
    """The fewest test images on which a configuration that changed no image's result (every
    loss 0) would pass; None if none would (bound 0) or above ``limit``."""
    if not bound > 0:
        return None

    def passes(n):
        return wsr_p_value(np.zeros((1, n)), bound, delta)[0] <= delta

    hi = 1
    while not passes(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:  # passes(lo) is false (or lo is 0), passes(hi) true
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi


def split_sizes(n: int, order_fraction: float = ORDER_FRACTION) -> tuple[int, int]:
    """(order part, test part) of ``n`` calibration images."""
    order = max(1, int(round(order_fraction * n)))
    return order, n - order


def check_risk_images(n: int, max_drop: float, delta: float, order_fraction: float = ORDER_FRACTION) -> None:
    """Refuse a calibration set too small for any configuration but the final exit alone to
    pass the test, saying how many images would be needed."""
    need = images_needed(max_drop / 100.0, delta)
    if need is None:
        raise CalibrationError(f"--risk {delta:g} with --max-drop {max_drop:g}: no configuration but the final "
                               "exit alone can be guaranteed a drop of 0; give a positive --max-drop")
    _, test = split_sizes(n, order_fraction)
    if test < need:
        total = n
        while split_sizes(total, order_fraction)[1] < need:
            total += 1
        raise CalibrationError(
            f"--risk {delta:g} with --max-drop {max_drop:g}: {n} calibration images are too few for any "
            f"configuration but the final exit alone to pass: the test part ({test} images, the other "
            f"{n - test} fix the order) needs at least {need} even if no image's result changed, so at least "
            f"{total} images in all; give more images, a larger --max-drop or a larger --risk")


# ---------------------------------------------------------------------------------------------
# order, test, choice

def _same(a: Configuration, b: Configuration) -> bool:
    return a.exits == b.exits and a.thresholds == b.thresholds and a.th_img == b.th_img and a.th_pix == b.th_pix


def configuration_order(searcher: Searcher, max_drop: float, steps: int = ORDER_STEPS, span: float = ORDER_SPAN,
                        subsets=None) -> list:
    """The fixed sequence, from ``searcher``'s images (the order part): the final exit alone,
    then for ``steps`` expected costs evenly spaced from its cost down to that of the *anchor*
    (the plain choice for ``span * max_drop``), the plain search's most accurate configuration
    within each cost, each configuration once. Cheaper is riskier, so the walk goes from safe
    to aggressive."""
    ref = searcher.reference()
    anchor = searcher.search(max_drop=max_drop * span, subsets=subsets).best
    order = [ref]
    for cost in np.linspace(ref.expected_cost, anchor.expected_cost, steps + 1)[1:]:
        cfg = searcher.search(max_cost=float(cost), subsets=subsets).best
        if not any(_same(cfg, c) for c in order):
            order.append(cfg)
    return order


@dataclass
class RiskControl:
    """The outcome of :func:`learn_then_test` / :func:`control_risk`."""

    chosen: Configuration          # on the images given to learn_then_test (the whole set for control_risk)
    chosen_index: int              # its position in ``order``
    order: list                    # the fixed sequence tested, final exit alone first
    p_values: list                 # per configuration in ``order`` (final exit alone: 0, never tested)
    passed: int                    # how many configurations of ``order`` passed
    mean_loss: list                # per configuration, mean loss on the test part (mIoU units)
    clipped: int                   # test-part losses above LOSS_RANGE[1], clipped there
    delta: float
    max_drop: float
    images: dict = field(default_factory=dict)  # "order", "test", "needed" image counts

    def to_dict(self) -> dict:
        return {"guarantee": f"with probability >= {1 - self.delta:g} over the calibration draw, the expected "
                             f"per-image loss on new images is <= {self.max_drop:g} pp",
                "delta": self.delta, "max_drop_pp": self.max_drop, "method": METHOD, "loss": LOSS_NAME,
                "loss_range": list(LOSS_RANGE), "images": dict(self.images),
                "order": [{"exits": c.exits, "thresholds": c.thresholds, "order_part_cost": c.expected_cost,
                           "p_value": float(p),
                           "mean_loss_pp": 100 * float(m), "passed": i < self.passed}
                          for i, (c, p, m) in enumerate(zip(self.order, self.p_values, self.mean_loss))],
                "passed": self.passed, "chosen_index": self.chosen_index, "clipped": self.clipped}


def learn_then_test(inter, union, conf, costs, order, max_drop: float, delta: float, scale: LossScale,
                    exit_names=None, th_pix_grid=None, policy: str = "mess") -> RiskControl:
    """Test the fixed sequence ``order`` (final exit alone first) on the images of the memo
    arrays, with the loss ``scale`` fitted elsewhere; the cheapest configuration that passed,
    assessed on these images."""
    check_risk(delta)
    if not (isinstance(max_drop, (int, float)) and max_drop > 0):
        raise CalibrationError(f"--max-drop must be positive with --risk, got {max_drop!r}")
    searcher = Searcher(inter, union, conf, costs, exit_names=exit_names, th_pix_grid=th_pix_grid, policy=policy)
    if not order or order[0].exits != [searcher.names[-1]]:
        raise CalibrationError("the order of configurations must start with the final exit alone (the fallback "
                               "that needs no test)")
    bound = max_drop / 100.0
    losses = np.stack([scale.losses(searcher.inter, searcher.union, exits_taken(*searcher.decisions(c)))
                       for c in order])
    p = wsr_p_value(losses, bound, delta)
    p[0] = 0.0  # the final exit alone: loss 0 on every image by construction
    passed = fixed_sequence(p, delta)
    assessed = [searcher.assess(c) for c in order[:passed]]
    best = min(range(passed), key=lambda i: (assessed[i].expected_cost, -i))
    return RiskControl(chosen=assessed[best], chosen_index=best, order=list(order), p_values=p.tolist(),
                       passed=passed, mean_loss=losses.mean(1).tolist(),
                       clipped=int((losses[:passed] > LOSS_RANGE[1]).sum()), delta=delta, max_drop=max_drop,
                       images={"test": searcher.n})


def control_risk(inter, union, conf, costs, max_drop: float, delta: float, exit_names=None, th_pix_grid=None,
                 policy: str = "mess", th_img_steps: int = 50, subsets=None, order_fraction: float = ORDER_FRACTION,
                 steps: int = ORDER_STEPS, seed: int = 0) -> RiskControl:
    """The whole procedure on one calibration memo: random split (``seed``), order and loss
    scale on the order part, test on the rest; ``chosen`` is assessed on all the images."""
    check_risk(delta)
    inter, union, conf = (np.asarray(a) for a in (inter, union, conf))
    n = len(inter)
    check_risk_images(n, max_drop, delta, order_fraction)
    n_order, n_test = split_sizes(n, order_fraction)
    perm = np.random.default_rng(seed).permutation(n)
    part, rest = perm[:n_order], perm[n_order:]

    def searcher(rows, th_img_steps=th_img_steps):
        return Searcher(inter[rows], union[rows], conf[rows], costs, exit_names=exit_names,
                        th_pix_grid=th_pix_grid, policy=policy, th_img_steps=th_img_steps)

    order = configuration_order(searcher(part, min(th_img_steps, ORDER_TH_IMG_STEPS)), max_drop, steps,
                                subsets=subsets)
    scale = LossScale.fit(inter[part], union[part])
    out = learn_then_test(inter[rest], union[rest], conf[rest], costs, order, max_drop, delta, scale,
                          exit_names=exit_names, th_pix_grid=th_pix_grid, policy=policy)
    out.chosen = searcher(np.arange(n)).assess(out.chosen)
    out.images = {"order": n_order, "test": n_test, "needed": images_needed(max_drop / 100.0, delta)}
    return out


def format_risk(risk: dict, plain: dict, unit: str) -> str:
    """The report's lines on the guarantee (``risk``: :meth:`RiskControl.to_dict`; ``plain``:
    the plain calibration's choice, as a Configuration dict)."""
    chosen = risk["order"][risk["chosen_index"]]
    im = risk["images"]
    lines = [f"guarantee        {risk['guarantee']} ({risk['method']})",
             f"loss             {risk['loss']}",
             f"order            {len(risk['order'])} configurations fixed on {im['order']} images (final exit alone "
             f"first, then the most accurate within falling costs); tested on the other {im['test']}: "
             f"{risk['passed']} passed (p <= {risk['delta']:g})",
             f"risk-controlled  exits {', '.join(chosen['exits'])} (configuration {risk['chosen_index']} of the order)"]
    if plain is not None:
        lines.append(f"given up         plain calibration would choose exits {', '.join(plain['exits'])} at "
                     f"expected cost {plain['expected_cost']:.4g} {unit}; the guarantee costs "
                     f"{risk['cost_given_up']:+.4g} {unit}")
    if risk["clipped"]:
        lines.append(f"note             {risk['clipped']} per-image losses above {risk['loss_range'][1]} were clipped "
                     "there: the guarantee is weaker than stated on such images")
    return "\n".join(lines)


__all__ = ["LOSS_NAME", "LOSS_RANGE", "LossScale", "RiskControl", "check_risk", "check_risk_images",
           "configuration_order", "control_risk", "exits_taken", "fixed_sequence", "format_risk",
           "images_needed", "learn_then_test", "split_sizes", "wsr_p_value"]
