"""What the exit-architecture search costs: ``mesc calibrate``'s search over candidate heads on
synthetic memos, beside the same search without candidates.

    python -m mesc.benchmarks.search_cost [--images 200] [--max-drop 1.0] [--json OUT]

The memos are numpy only (no package, no model): per exit point a backbone chunk, per head an
accuracy that grows with its point's depth and its candidate index (a later candidate is better
and dearer), per image a difficulty that lowers every head's accuracy and confidence. Each point
map is searched with calibrate's defaults (20 th_pix values x 50 th_img steps); the figures are
the architectures searched, how many exhaustively, the seconds, the configurations evaluated,
and the chosen configuration beside the best with the fixed heads (candidate 0 everywhere).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mesc.calibration.exits.memo import DEFAULT_TH_PIX_GRID
from mesc.calibration.exits.search import Costs, Searcher

# exit point of each exit: without candidates, then 2 or 3 candidates at each early point
POINT_MAPS = ([0, 1, 2], [0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 1, 2], [0, 1, 2, 3], [0, 0, 1, 1, 2, 2, 3])


def synthetic_memo(point, images: int = 200, classes: int = 8, seed: int = 0):
    """(inter, union, conf, Costs) for heads on ``point`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    point = np.asarray(point)
    e, g = len(point), len(DEFAULT_TH_PIX_GRID)
    first = np.r_[True, point[1:] != point[:-1]]
    candidate = np.array([np.sum(point[:k] == point[k]) for k in range(e)])
    skill = (point + 1) / (point[-1] + 1) * (0.6 + 0.4 * np.minimum(candidate, 2) / 2)
    skill[-1] = 1.0
    difficulty = rng.uniform(0, 1, images)
    acc = np.clip(1 - 0.8 * difficulty[:, None] * (1.1 - skill[None, :]), 0.05, 1)
    gt = rng.integers(100, 1000, (images, classes)).astype(float)
    inter = np.floor(gt[:, None, :] * np.clip(acc[:, :, None] + rng.normal(0, 0.05, (images, e, classes)), 0, 1))
    union = 2 * gt[:, None, :] - inter
    seen = acc + rng.normal(0, 0.08, (images, e))
    conf = np.clip(seen[:, :, None] - np.linspace(0, 0.5, g)[None, None, :] * (1.2 - acc[:, :, None]), 0, 1)
    chunk = np.where(first, rng.uniform(1, 3, e), 0.0)
    head = rng.uniform(0.2, 0.6, e) * (1 + 0.5 * candidate)
    return inter, union, conf, Costs(chunk, head, point=point.tolist(), unit="ms", source="synthetic")


def measure(point, images: int, max_drop: float) -> dict:
    inter, union, conf, costs = synthetic_memo(point, images)
    s = Searcher(inter, union, conf, costs, th_pix_grid=DEFAULT_TH_PIX_GRID, th_img_steps=50)
    t0 = time.perf_counter()
    r = s.search(max_drop=max_drop)
    seconds = time.perf_counter() - t0
    fixed = r.fixed_heads_best
    return {"point": list(point), "architectures": len(r.subsets), "exhaustive": int(sum(r.exhaustive.values())),
            "seconds": round(seconds, 2), "evaluated": int(r.evaluated),
            "chosen": {"exits": r.best.exits, "cost": r.best.expected_cost, "miou": r.best.miou},
            "fixed_heads": {"exits": fixed.exits, "cost": fixed.expected_cost, "miou": fixed.miou},
            "final_only_cost": r.reference.expected_cost}


def main(argv=None) -> None:
    from mesc.benchmarks.harness import environment

    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.search_cost")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    rows = []
    for point in POINT_MAPS:
        row = measure(point, args.images, args.max_drop)
        rows.append(row)
        print(f"points {row['point']}: {row['architectures']} architectures ({row['exhaustive']} exhaustively), "
              f"{row['seconds']:.1f} s, {row['evaluated']} evaluated; chosen {'+'.join(row['chosen']['exits'])} "
              f"{row['chosen']['cost']:.3f} ms, fixed heads {'+'.join(row['fixed_heads']['exits'])} "
              f"{row['fixed_heads']['cost']:.3f} ms, final only {row['final_only_cost']:.3f} ms", flush=True)
    if args.json:
        from mesc.package.staging import write_json_atomic

        write_json_atomic(args.json, {"images": args.images, "max_drop": args.max_drop, "rows": rows,
                                      "environment": environment("cpu")})


if __name__ == "__main__":
    main()
