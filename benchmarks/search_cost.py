"""What the exit-architecture search costs: ``mesc calibrate``'s search over candidate heads on
synthetic memos, from the paper's sizes down.

    python -m mesc.benchmarks.search_cost [--images 500] [--max-drop 1.0 | --max-cost-ratio 0.6]
        [--sizes 3x5,4x32] [--budget 3600] [--json OUT]

The memos are numpy only (no package, no model): per exit point a backbone chunk; per candidate
head a capacity ``q`` in [0, 1] that makes it dearer (head cost 0.1-0.6 ms) and better (its
accuracy grows with its point's depth and with ``q``), the final exit the best; per image a
difficulty that lowers every head's accuracy and confidence. A size ``PxK`` is P exit points (the
final one included) with K candidate heads at each of the P-1 early points: ``(K + 1)^(P - 1)``
architectures (MESS Eq. 4; the paper's 4 x 4 x 2 x 2 = 64 heads per point). Each is searched with
calibrate's defaults (20 th_pix values x 50 th_img steps, pruning on) and the figures are the
architectures in the space, how many were searched (a threshold search run) and pruned (by rule),
the configurations visited (cost computed) and evaluated (mIoU too), the seconds, the memory the
memo and the search's per-exit options take, and the choice beside the fixed heads (candidate 0
everywhere). A size whose search does not end within ``--budget`` seconds is cut off and
recorded as such (a SIGALRM, so the bounding phase is cut off too), with the share of its
space decided (searched or pruned) by then.

The search is MESS Eq. 5 (``--max-drop PP``: least expected cost within PP of the final exit's
mIoU) or Eq. 6 (``--max-cost-ratio R``: best mIoU at an expected cost of at most R times the
final exit's alone; a ratio rather than a cost, since each size's synthetic costs differ).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import time

import numpy as np

from mesc.calibration.exits.memo import DEFAULT_TH_PIX_GRID
from mesc.calibration.exits.search import Costs, Searcher
from mesc.errors import MescError

# (points incl. the final, candidates per early point), small to the paper's size
SIZES = ((3, 5), (3, 16), (3, 64), (4, 5), (4, 16), (4, 32), (5, 5), (5, 16), (6, 5), (4, 64), (5, 32), (6, 16),
         (5, 64), (6, 64))


def paper_points(points: int, candidates: int) -> list:
    """The exit point of every exit: ``candidates`` heads at each of the first ``points - 1``
    points, then the final exit."""
    return [p for p in range(points - 1) for _ in range(candidates)] + [points - 1]


def synthetic_memo(point, images: int = 200, classes: int = 8, seed: int = 0, grid=DEFAULT_TH_PIX_GRID):
    """(inter, union, conf, Costs) for heads on ``point`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    point = np.asarray(point)
    e, g = len(point), len(grid)
    first = np.r_[True, point[1:] != point[:-1]]
    capacity = np.where(first, 0.0, rng.uniform(0, 1, e))  # candidate 0 the plainest head of its point
    skill = (point + 1) / (point[-1] + 1) * (0.6 + 0.4 * capacity)
    skill[-1] = 1.0
    difficulty = rng.uniform(0, 1, images)
    acc = np.clip(1 - 0.8 * difficulty[:, None] * (1.1 - skill[None, :]), 0.05, 1)
    gt = rng.integers(100, 1000, (images, classes)).astype(float)
    inter = np.floor(gt[:, None, :] * np.clip(acc[:, :, None] + rng.normal(0, 0.05, (images, e, classes)), 0, 1))
    union = 2 * gt[:, None, :] - inter
    seen = acc + rng.normal(0, 0.08, (images, e))
    conf = np.clip(seen[:, :, None] - np.linspace(0, 0.5, g)[None, None, :] * (1.2 - acc[:, :, None]), 0, 1)
    chunk = np.where(first, rng.uniform(1, 3, e), 0.0)
    head = 0.1 + 0.5 * capacity
    head[-1] = 0.3
    return inter, union, conf, Costs(chunk, head, point=point.tolist(), unit="ms", source="synthetic")


def memo_bytes(images: int, exits: int, classes: int, grid: int) -> int:
    """What calibrate holds per memo: inter and union (int64 in the cache, float64 in the search)
    and the MESS scores (float64, one per th_pix), N x E each."""
    return images * exits * (2 * classes + grid) * 8


class _Cutoff(Exception):
    pass


def measure(point, images: int, max_drop: float | None = None, budget: float | None = None, th_img_steps: int = 50,
            classes: int = 8, prune: bool = True, max_cost_ratio: float | None = None) -> dict:
    """One search under ``max_drop`` (pp) or ``max_cost_ratio`` (of the final exit's cost); with
    ``budget`` seconds it is cut off there (``"completed": false``)."""
    if (max_drop is None) == (max_cost_ratio is None):
        raise MescError("give exactly one of max_drop and max_cost_ratio")
    inter, union, conf, costs = synthetic_memo(point, images, classes=classes)
    if max_cost_ratio is None:
        bound = {"max_drop": max_drop}
    else:
        bound = {"max_cost": max_cost_ratio * costs.budgeted(len(point) - 1)}
    t_opts = time.perf_counter()
    s = Searcher(inter, union, conf, costs, th_pix_grid=DEFAULT_TH_PIX_GRID, th_img_steps=th_img_steps)
    options_seconds = time.perf_counter() - t_opts
    option_rows = sum(len(o) for o in s.options)
    seen = {"searched": 0}
    t0, c0 = time.perf_counter(), time.process_time()  # wall and this process' CPU (the machine is shared)

    def progress(order):  # counts the architectures taken up
        for i in order:
            seen["searched"] += 1
            yield i

    def cut_off(signum, frame):  # past the budget, wherever the search is (bounding included)
        raise _Cutoff

    load = os.getloadavg()[0]
    row = {"point": list(point) if len(point) <= 8 else None,
           "points": int(len(set(point))), "candidates": int(max(np.bincount(point[:-1]))) if len(point) > 1 else 0,
           "images": images, "load_before": round(load, 2), **bound}
    previous = signal.signal(signal.SIGALRM, cut_off) if budget is not None else None
    if budget is not None:
        signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        r = s.search(**bound, progress=progress, prune=prune)
    except _Cutoff:
        seconds = time.perf_counter() - t0
        st = s.last_run.stats()
        decided = st["searched"] + sum(st["pruned"].values())
        row.update(completed=False, seconds=round(seconds, 1), cpu_seconds=round(time.process_time() - c0, 1),
                   evaluated=int(s.evaluated), visited=int(s.visited),
                   architectures=st["architectures"], searched=st["searched"], pruned=st["pruned"],
                   decided_share=round(decided / st["architectures"], 6),
                   pruned_share_of_decided=round(sum(st["pruned"].values()) / max(decided, 1), 6),
                   bounding_seconds=st["bounding_seconds"], bounded=st["bounded"], cut_in=st["phase"],
                   load_after=round(os.getloadavg()[0], 2))
        return row
    finally:
        if budget is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - t0
    fixed = r.fixed_heads_best
    pruned = r.space["pruned"]
    row.update(completed=True, architectures=r.space["architectures"], searched=r.space["searched"],
               pruned=pruned, pruned_share=round(sum(pruned.values()) / r.space["architectures"], 6),
               exhaustive=int(sum(r.exhaustive.values())), seconds=round(seconds, 2),
               cpu_seconds=round(time.process_time() - c0, 2),
               bounding_seconds=r.space["bounding_seconds"],
               options_seconds=round(options_seconds, 2), visited=int(r.space["visited"]),
               evaluated=int(r.evaluated), load_after=round(os.getloadavg()[0], 2),
               memory={"memo_bytes": memo_bytes(images, len(point), classes, len(DEFAULT_TH_PIX_GRID)),
                       "option_rows": option_rows, "option_bytes": option_rows * images,
                       "points_bytes": int(r.points.nbytes + r.point_subsets.nbytes),
                       "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
               chosen={"exits": r.best.exits, "cost": r.best.expected_cost, "miou": r.best.miou},
               fixed_heads={"exits": fixed.exits, "cost": fixed.expected_cost, "miou": fixed.miou},
               final_only_cost=r.reference.expected_cost)
    return row


def _parse_sizes(text):
    out = []
    for part in text.split(","):
        p, k = part.lower().split("x")
        out.append((int(p), int(k)))
    return out


def main(argv=None) -> None:
    from mesc.benchmarks.harness import environment

    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.search_cost")
    ap.add_argument("--images", type=int, default=500)
    bound = ap.add_mutually_exclusive_group()
    bound.add_argument("--max-drop", type=float, default=None, help="Eq. 5: percentage points (default 1.0)")
    bound.add_argument("--max-cost-ratio", type=float, default=None,
                       help="Eq. 6: the cost bound as a fraction of the final exit's cost")
    ap.add_argument("--sizes", default=None, help="PxK,... (points incl. the final x candidates per early point)")
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds per size before it is cut off")
    ap.add_argument("--json", default=None, help="write the figures here (rewritten after every size)")
    args = ap.parse_args(argv)
    if args.max_cost_ratio is None and args.max_drop is None:
        args.max_drop = 1.0
    if args.max_cost_ratio is not None and not args.max_cost_ratio > 0:
        ap.error(f"--max-cost-ratio must be positive, got {args.max_cost_ratio}")
    sizes = _parse_sizes(args.sizes) if args.sizes else SIZES
    rows = []
    for points, candidates in sizes:
        row = measure(paper_points(points, candidates), args.images, args.max_drop, budget=args.budget,
                      max_cost_ratio=args.max_cost_ratio)
        rows.append(row)
        if row["completed"]:
            print(f"{points}x{candidates}: {row['architectures']} architectures, {row['searched']} searched, "
                  f"{row['pruned']} pruned, {row['seconds']:.1f} s, {row['visited']} visited / {row['evaluated']} "
                  f"evaluated; chosen {'+'.join(row['chosen']['exits'])} {row['chosen']['cost']:.3f} ms "
                  f"{100 * row['chosen']['miou']:.2f}%, fixed heads {row['fixed_heads']['cost']:.3f} ms "
                  f"{100 * row['fixed_heads']['miou']:.2f}%, final only {row['final_only_cost']:.3f} ms "
                  f"(load {row['load_before']} -> {row['load_after']})", flush=True)
        else:
            print(f"{points}x{candidates}: {row['architectures']} architectures, cut off after {row['seconds']:.0f} s "
                  f"(load {row['load_before']})", flush=True)
        if args.json:
            from mesc.package.staging import write_json_atomic

            bound = {"max_drop": args.max_drop} if args.max_cost_ratio is None else \
                {"max_cost_ratio": args.max_cost_ratio}
            write_json_atomic(args.json, {"images": args.images, **bound, "budget_s": args.budget,
                                          "rows": rows, "environment": environment("cpu")})


if __name__ == "__main__":
    main()
