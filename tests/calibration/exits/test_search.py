"""The exit/threshold search against an independent brute force on small constructed cases."""

import itertools

import numpy as np
import pytest

from mesc.calibration.exits.search import (
    Costs,
    InfeasibleBound,
    Searcher,
    architectures,
    costs_from_package,
    pareto_front,
)
from mesc.errors import MescError
from mesc.package import Package


# ---------------------------------------------------------------------------------------------
# an independent brute force: plain Python loops over every choice of at most one exit per exit
# point (the final always kept; without candidates every exit subset) and every distinct decision
# each kept exit can make (thresholds at every observed score value)

def _brute_miou(inter, union):
    ious = [i / u for i, u in zip(inter, union) if u > 0]
    return sum(ious) / len(ious) if ious else 0.0


def _decisions(scores):
    """Every distinct pass set of ``score >= t`` over thresholds t, as (g, t, passes)."""
    out = [(-1, None, tuple([False] * scores.shape[0]))]
    for g in range(scores.shape[1]):
        for t in sorted(set(scores[:, g].tolist())):
            out.append((g, t, tuple(bool(v >= t) for v in scores[:, g])))
    return out


def brute_force_all(inter, union, conf, chunk, head, max_drop=None, max_cost=None, tail=None, point=None):
    """{"best": (key, cost, mIoU, kept) or None, "by_subset": kept tuple -> the same for that
    subset (feasible ones only), "subsets": every kept tuple considered}."""
    n, e, c = inter.shape
    last = e - 1
    point = list(range(e)) if point is None else [int(p) for p in point]
    ref = _brute_miou(inter[:, last].sum(0), union[:, last].sum(0))
    groups = {}
    for k in range(last):
        groups.setdefault(point[k], []).append(k)
    best, by_subset, subsets = None, {}, []
    for pick in itertools.product(*[[None] + g for g in groups.values()]):
        kept = [k for k in pick if k is not None] + [last]
        subsets.append(tuple(kept))
        for decs in itertools.product(*[_decisions(conf[:, k]) for k in kept[:-1]]):
            I, U = np.zeros(c), np.zeros(c)
            reach = [0] * len(kept)
            cost = 0.0
            for i in range(n):
                for j, k in enumerate(kept):
                    reach[j] += 1
                    if j == len(kept) - 1 or decs[j][2][i]:
                        I += inter[i, k]
                        U += union[i, k]
                        cost += (0.0 if tail is None else tail[k]) / n  # only leaving images
                        break
            prev = -1  # the previous kept exit's point: the chunks of the points after it run
            for j, k in enumerate(kept):
                cost += reach[j] / n * (sum(chunk[x] for x in range(e) if prev < point[x] <= point[k]) + head[k])
                prev = point[k]
            m = _brute_miou(I, U)
            if max_drop is not None:
                ok = m >= ref - max_drop / 100 - 1e-12
                key = (cost, -m)
            else:
                ok = cost <= max_cost + 1e-12
                key = (-m, cost)
            if ok and (best is None or key < best[0]):
                best = (key, cost, m, kept)
            if ok and (tuple(kept) not in by_subset or key < by_subset[tuple(kept)][0]):
                by_subset[tuple(kept)] = (key, cost, m, kept)
    return {"best": best, "by_subset": by_subset, "subsets": subsets}


def brute_force(*args, **kw):
    return brute_force_all(*args, **kw)["best"]


def _random_case(seed, n=7, e=3, c=3, g=2):
    rng = np.random.default_rng(seed)
    gt = rng.integers(1, 30, (n, c)).astype(float)
    inter = np.floor(gt[:, None, :] * rng.uniform(0.2, 1.0, (n, e, c)))
    union = gt[:, None, :] + rng.integers(0, 10, (n, e, c))
    # an absent class in some images, so zero unions occur
    union[0, :, 0] = 0
    inter[0, :, 0] = 0
    conf = rng.integers(0, 6, (n, e, g)) / 5.0  # ties on purpose
    chunk = rng.uniform(1, 5, e).round(2)
    head = rng.uniform(0.2, 1.5, e).round(2)
    return inter, union, conf, chunk, head


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound", [("max_drop", 0.0), ("max_drop", 2.0), ("max_drop", 8.0), ("max_cost", 0.8)])
@pytest.mark.parametrize("tails", [False, True])
def test_search_matches_brute_force(seed, bound, tails):
    inter, union, conf, chunk, head = _random_case(seed)
    tail = np.random.default_rng(seed + 100).uniform(0.1, 1.0, len(head)).round(2) if tails else None
    kw = {bound[0]: bound[1]}
    if "max_cost" in kw:  # a fraction of the final-only cost, feasible by construction
        kw["max_cost"] = bound[1] * (chunk.sum() + head[-1] + (tail[-1] if tails else 0.0))
    want = brute_force(inter, union, conf, chunk, head, tail=tail, **kw)
    s = Searcher(inter, union, conf, Costs(chunk, head, tail=tail), th_pix_grid=[0.5, 0.9], th_img_steps=64)
    if want is None:
        with pytest.raises(InfeasibleBound):
            s.search(**kw)
        return
    got = s.search(**kw).best
    assert got.expected_cost == pytest.approx(want[1], abs=1e-9)
    assert got.miou == pytest.approx(want[2], abs=1e-12)
    if "max_drop" in kw:
        assert got.miou >= s.reference().miou - kw["max_drop"] / 100 - 1e-12
    else:
        assert got.expected_cost <= kw["max_cost"] + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_local_search_close_to_brute_force(seed):
    """Past the exhaustive limit the search is a coordinate/pair descent: feasible, and on these
    small cases within 5% of the optimum cost."""
    inter, union, conf, chunk, head = _random_case(100 + seed, n=8, e=4, g=2)
    want = brute_force(inter, union, conf, chunk, head, max_drop=3.0)
    s = Searcher(inter, union, conf, Costs(chunk, head), th_img_steps=64)
    res = s.search(max_drop=3.0, exhaustive_limit=0)
    assert not any(res.exhaustive[k] for k in res.exhaustive if len(k) > 1)
    assert res.best.miou >= res.reference.miou - 0.03 - 1e-12
    assert res.best.expected_cost <= want[1] * 1.05 + 1e-9


def test_known_case_exits_the_easy_images():
    """Four images, two exits: exit0 is as good as the final on images 0 and 1 and confident only
    there, so with no drop allowed those two leave early and the rest go on."""
    inter = np.zeros((4, 2, 2))
    union = np.full((4, 2, 2), 10.0)
    inter[:, 1] = 10.0                   # the final exit is perfect
    inter[:2, 0] = 10.0                  # exit0 perfect on the easy images...
    inter[2:, 0] = 2.0                   # ...and poor on the hard ones
    conf = np.array([[0.95, 1.0], [0.9, 1.0], [0.4, 1.0], [0.7, 1.0]])[:, :, None]
    s = Searcher(inter, union, conf, Costs([1.0, 3.0], [0.5, 0.5]), exit_names=["early", "final"])
    cfg = s.search(max_drop=0.0).best
    assert cfg.exits == ["early", "final"]
    assert cfg.exit_fraction == {"early": 0.5, "final": 0.5}
    assert 0.7 < cfg.th_img["early"] <= 0.9
    assert cfg.miou == pytest.approx(1.0)
    # 1.5 for everyone at exit0, then half of them run the final chunk and head (3.5)
    assert cfg.expected_cost == pytest.approx(1.5 + 0.5 * 3.5)
    ref = s.reference()
    assert ref.exits == ["final"] and ref.expected_cost == pytest.approx(4.5)
    # a cost bound below what exit0 alone costs for everyone cannot be met
    with pytest.raises(InfeasibleBound, match="cheapest"):
        s.search(max_cost=1.0)
    # budgeted: single exits, anytime: all heads up to the exit
    b = s.budgeted()
    assert [x.expected_cost for x in b] == [1.5, 4.5]
    assert s.search(max_drop=0.0).budgeted_best.exits == ["final"]
    res = s.search(max_cost=4.8)
    assert res.budgeted_best.exits == ["final"]      # 4.5 fits
    assert res.anytime_best["exit"] == "early"       # running both heads costs 5.0
    assert [a["cost"] for a in s.anytime()] == [1.5, 5.0]


def test_assess_reproduces_the_search_figures():
    inter, union, conf, chunk, head = _random_case(5, n=9)
    s = Searcher(inter, union, conf, Costs(chunk, head), th_pix_grid=[0.5, 0.9])
    for kw in ({"max_drop": 4.0}, {"max_cost": 0.7 * (chunk.sum() + head[-1])}):
        cfg = s.search(**kw).best
        again = s.assess(cfg)
        assert again.expected_cost == pytest.approx(cfg.expected_cost)
        assert again.miou == pytest.approx(cfg.miou) and again.exit_fraction == pytest.approx(cfg.exit_fraction)


def test_dropped_exit_keeps_its_chunk_not_its_head():
    c = Costs([1.0, 2.0, 4.0], [0.1, 0.2, 0.4])
    assert c.subset_segment_costs([2]).tolist() == pytest.approx([7.4])
    assert c.subset_segment_costs([0, 2]).tolist() == pytest.approx([1.1, 6.4])
    assert c.subset_segment_costs([1, 2]).tolist() == pytest.approx([3.2, 4.4])


def test_range_policy_and_single_score():
    """FFT-style range decisions: the search finds the band of scores where exit0 is right."""
    n = 6
    inter = np.zeros((n, 2, 1))
    union = np.full((n, 2, 1), 10.0)
    inter[:, 1] = 10.0
    inter[:, 0] = 0.0
    inter[2:4, 0] = 10.0                  # exit0 right only on the mid-scored images
    conf = np.zeros((n, 2, 1))
    conf[:, 0, 0] = [0.1, 0.2, 0.5, 0.6, 0.9, 1.0]
    s = Searcher(inter, union, conf, Costs([1.0, 3.0], [0.0, 0.0]), policy="fft")
    cfg = s.search(max_drop=0.0).best
    assert cfg.exit_fraction["exit0"] == pytest.approx(2 / 6)
    lo, hi = cfg.thresholds["exit0"]["lo"], cfg.thresholds["exit0"]["hi"]
    assert 0.2 < lo <= 0.5 and 0.6 <= hi < 0.9


def test_pareto():
    pts = np.array([[1.0, 0.5], [2.0, 0.4], [2.0, 0.7], [3.0, 0.7], [0.5, 0.1]])
    assert pareto_front(pts).tolist() == [4, 0, 2]


def test_bad_bounds():
    inter, union, conf, chunk, head = _random_case(0)
    s = Searcher(inter, union, conf, Costs(chunk, head))
    with pytest.raises(MescError, match="exactly one"):
        s.search()
    with pytest.raises(MescError, match="max-drop"):
        s.search(max_drop=-1)
    with pytest.raises(MescError, match="final exit"):
        s.search(max_drop=1, subsets=[(0, 1)])


def test_costs_from_package_prefers_recorded_latency(tmp_path):
    def seg(name, kind, ins, outs, flops, exit=None):
        return {"name": name, "kind": kind, "exit": exit, "file": f"onnx/{name}.onnx", "flops": flops,
                "inputs": [{"name": t, "shape": [1], "dtype": "float32"} for t in ins],
                "outputs": [{"name": t, "shape": [1], "dtype": "float32"} for t in outs]}

    segs = [seg("chunk0", "chunk", ["image"], ["a"], 4e6), seg("head0", "head", ["a"], ["e0"], 1e6, "exit0"),
            seg("chunk1", "chunk", ["a"], ["b"], 8e6), seg("head1", "head", ["b"], ["e1"], 2e6, "exit1"),
            seg("head2", "head", ["b", "a"], ["e2"], 3e6, "exit2")]
    exits = [{"name": f"exit{i}", "segment": f"head{i}", "logits": f"e{i}", "num_classes": 2,
              "output_stride": 1, "policy": {}} for i in range(3)]
    manifest = {"schema_version": 1, "input": {"name": "image", "shape": [1, 3, 4, 4], "dtype": "float32"},
                "segments": segs, "exits": exits, "files": {s["file"]: "0" for s in segs}, "latency": {}}
    pkg = Package(tmp_path, manifest)
    c = costs_from_package(pkg)
    assert c.unit == "MFLOPs"
    assert c.chunk.tolist() == [4.0, 8.0, 0.0] and c.head.tolist() == [1.0, 2.0, 3.0]
    manifest["latency"] = {"onnxruntime/cpu": {"chunk0": 2.0, "head0": 0.5, "chunk1": 3.0, "head1": 0.25,
                                               "head2": 1.0}}
    pkg.manifest_edited()
    c = costs_from_package(pkg)
    assert c.unit == "ms" and c.source == "latency:onnxruntime/cpu"
    assert c.chunk.tolist() == [2.0, 3.0, 0.0] and c.head.tolist() == [0.5, 0.25, 1.0]
    with pytest.raises(MescError, match="no latency recorded"):
        costs_from_package(pkg, latency_key="tensorrt/xavier")


# ---------------------------------------------------------------------------------------------
# candidate heads: several exits at one exit point, at most one kept per point

POINT_MAPS = [[0, 0, 1, 2], [0, 0, 0, 1], [0, 1, 1, 2]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("point", POINT_MAPS)
@pytest.mark.parametrize("bound", [("max_drop", 0.0), ("max_drop", 4.0), ("max_cost", 0.7)])
def test_candidate_search_matches_brute_force(seed, point, bound):
    """Every per-point choice of heads x every threshold decision, by brute force: the search
    finds the optimum, the best of every architecture, and the best with the fixed heads."""
    inter, union, conf, chunk, head = _random_case(200 + seed, e=len(point))
    tail = np.random.default_rng(seed).uniform(0.1, 1.0, len(head)).round(2)
    kw = {bound[0]: bound[1]}
    if "max_cost" in kw:  # a fraction of the final-only cost: every chunk (each point's), its head and tail
        kw["max_cost"] = bound[1] * (chunk.sum() + head[-1] + tail[-1])
    want = brute_force_all(inter, union, conf, chunk, head, tail=tail, point=point, **kw)
    s = Searcher(inter, union, conf, Costs(chunk, head, tail=tail, point=point), th_pix_grid=[0.5, 0.9],
                 th_img_steps=64)
    if want["best"] is None:
        with pytest.raises(InfeasibleBound):
            s.search(**kw)
        return
    pruned = s.search(**kw)
    assert pruned.best.expected_cost == pytest.approx(want["best"][1], abs=1e-9)
    assert pruned.best.miou == pytest.approx(want["best"][2], abs=1e-12)
    # without pruning every architecture is searched in full: each one's best is the brute force's
    res = s.search(**kw, prune=False)
    assert pruned.best == res.best and pruned.fixed_heads_best == res.fixed_heads_best
    assert sorted(map(tuple, res.subsets)) == sorted(want["subsets"])
    assert res.best.expected_cost == pytest.approx(want["best"][1], abs=1e-9)
    assert res.best.miou == pytest.approx(want["best"][2], abs=1e-12)
    names = [f"exit{e}" for e in range(len(point))]
    assert len({point[names.index(x)] for x in res.best.exits}) == len(res.best.exits)
    for sub, got in zip(res.subsets, res.by_subset):
        ref = want["by_subset"].get(tuple(sub))
        assert got["feasible"] == (ref is not None)
        assert got["best"].exits == [names[e] for e in sub]
        if ref is not None:
            assert got["best"].expected_cost == pytest.approx(ref[1], abs=1e-9)
            assert got["best"].miou == pytest.approx(ref[2], abs=1e-12)
    # fixed heads: the first exit of every point
    first = {min(e for e in range(len(point)) if point[e] == p) for p in point}
    fixed = [v for k, v in want["by_subset"].items() if set(k) <= first]
    fixed_want = min(fixed, key=lambda v: v[0]) if fixed else None
    if fixed_want is None:
        assert not any(b["feasible"] for b in res.by_subset if b["fixed_heads"])
    else:
        assert res.fixed_heads_best.expected_cost == pytest.approx(fixed_want[1], abs=1e-9)
        assert res.fixed_heads_best.miou == pytest.approx(fixed_want[2], abs=1e-12)


def test_candidate_costs_by_hand():
    """Point 0 has two heads on one chunk (exit1's chunk entry is 0, as the exporter splits it;
    a non-zero one would count for the point too)."""
    c = Costs([2.0, 0.5, 3.0, 1.0], [0.5, 1.0, 0.25, 2.0], point=[0, 0, 1, 2], tail=[0.1, 0.2, 0.3, 0.4])
    assert c.has_candidates and c.first_heads().tolist() == [True, False, True, True]
    # exit1 alone at point 0 pays the point's chunks (2 + 0.5) and its own head, never exit0's
    assert c.subset_segment_costs([1, 3]).tolist() == pytest.approx([2.5 + 1.0, 3.0 + 1.0 + 2.0])
    assert c.subset_segment_costs([0, 2, 3]).tolist() == pytest.approx([3.0, 3.25, 3.0])
    assert c.subset_segment_costs([3]).tolist() == pytest.approx([8.5])
    assert c.budgeted(1) == pytest.approx(2.5 + 1.0 + 0.2)
    assert c.budgeted(2) == pytest.approx(5.5 + 0.25 + 0.3)
    # anytime: every point in turn with its first head, then the exit's own
    assert c.anytime(1) == pytest.approx(2.5 + 1.0 + 0.2)
    assert c.anytime(2) == pytest.approx(5.5 + 0.5 + 0.1 + 0.25 + 0.3)
    assert c.anytime(3) == pytest.approx(6.5 + 0.5 + 0.1 + 0.25 + 0.3 + 2.0 + 0.4)
    plain = Costs([2.0, 3.0, 1.0], [0.5, 0.25, 2.0])
    assert not plain.has_candidates and plain.point.tolist() == [0, 1, 2]


def test_architectures():
    # without candidates: every subset holding the final, in itertools.combinations' order
    want = [tuple(s) + (3,) for r in range(4) for s in itertools.combinations(range(3), r)]
    assert architectures([0, 1, 2, 3]) == want
    assert architectures([0, 0, 1, 2]) == [(3,), (0, 3), (1, 3), (2, 3), (0, 2, 3), (1, 2, 3)]
    assert architectures([0, 0, 1, 2], every_point=True) == [(0, 2, 3), (1, 2, 3)]
    assert architectures([0, 1, 2], every_point=True) == [(0, 1, 2)]
    assert architectures([5]) == [(0,)]


@pytest.mark.parametrize("point,message", [
    ([0, 1, 1], "one head at the final point"),
    ([1, 0, 2], "non-decreasing"),
    ([0, 1], "one integer exit point per exit"),
    ([0.0, 1.0, 2.0], "one integer exit point per exit"),
])
def test_bad_points_are_refused(point, message):
    with pytest.raises(MescError, match=message):
        Costs([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], point=point)


def test_two_heads_at_one_point_are_refused():
    inter, union, conf, chunk, head = _random_case(0, e=4)
    s = Searcher(inter, union, conf, Costs(chunk, head, point=[0, 0, 1, 2]))
    with pytest.raises(MescError, match=r"keeps two heads at one exit point \(points \[0, 0, 2\]\)"):
        s.search(max_drop=1, subsets=[(0, 1, 3)])


def test_the_search_picks_the_better_candidate_and_says_what_it_gained():
    """Point 0 offers a useless head (candidate 0, what an uncalibrated package runs) and a good
    one on the easy images: with no drop allowed, only candidate 1 lets images leave early."""
    inter = np.zeros((4, 3, 2))
    union = np.full((4, 3, 2), 10.0)
    inter[:, 2] = 10.0                   # the final exit is perfect
    inter[:2, 1] = 10.0                  # candidate 1: perfect on the easy images, confident there
    conf = np.array([[0.99, 0.95, 1.0], [0.99, 0.9, 1.0], [0.99, 0.4, 1.0], [0.99, 0.7, 1.0]])[:, :, None]
    costs = Costs([1.0, 0.0, 3.0], [0.5, 0.5, 0.5], point=[0, 0, 1])
    s = Searcher(inter, union, conf, costs, exit_names=["exit0c0", "exit0c1", "exit1"])
    res = s.search(max_drop=0.0)
    assert res.best.exits == ["exit0c1", "exit1"]
    assert res.best.exit_fraction == {"exit0c1": 0.5, "exit1": 0.5}
    # 1.5 for everyone at point 0, then half of them run the final chunk and head (3.5)
    assert res.best.expected_cost == pytest.approx(1.5 + 0.5 * 3.5)
    fixed = res.fixed_heads_best
    assert fixed.exits == ["exit1"] and fixed.expected_cost == pytest.approx(4.5)
    # pruned: exit0c0 never beats the final exit on an image, so with it every image must reach
    # the final exit: at least 1.5 + 3.5 = 5 > 4.5 (the final alone), skipped before any threshold
    assert res.subsets == [[2], [1, 2]] and res.space["pruned"]["bound"] == 1
    full = s.search(max_drop=0.0, prune=False)
    assert full.best == res.best and full.fixed_heads_best == fixed
    kept = {tuple(b["best"].exits): b for b in full.by_subset}
    assert set(kept) == {("exit1",), ("exit0c0", "exit1"), ("exit0c1", "exit1")}
    assert kept[("exit0c0", "exit1")]["fixed_heads"] and not kept[("exit0c1", "exit1")]["fixed_heads"]
    # exit0c0 meets the bound only by never letting an image go: its chunk and head for nothing
    assert kept[("exit0c0", "exit1")]["best"].exit_fraction["exit0c0"] == 0.0
    assert kept[("exit0c0", "exit1")]["best"].expected_cost == pytest.approx(5.0)
    # --all-exits with candidates: a head at every point, the search still chooses which
    res = s.search(max_drop=0.0, subsets=architectures(costs.point, every_point=True))
    assert res.best.exits == ["exit0c1", "exit1"]


def test_costs_from_package_with_candidates(tmp_path):
    """Two heads on chunk0's output: the chunk is counted once, for the point (on its first
    head), and the points come from the manifest."""
    def seg(name, kind, ins, outs, flops, exit):
        return {"name": name, "kind": kind, "exit": exit, "file": f"onnx/{name}.onnx", "flops": flops,
                "inputs": [{"name": t, "shape": [1], "dtype": "float32"} for t in ins],
                "outputs": [{"name": t, "shape": [1], "dtype": "float32"} for t in outs]}

    segs = [seg("chunk0", "chunk", ["image"], ["a"], 4e6, "exit0c0"),
            seg("head0c0", "head", ["a"], ["l0"], 1e6, "exit0c0"), seg("head0c1", "head", ["a"], ["l1"], 5e6, "exit0c1"),
            seg("chunk1", "chunk", ["a"], ["b"], 8e6, "exit1"), seg("head1", "head", ["b"], ["l2"], 2e6, "exit1"),
            seg("head2", "head", ["b"], ["l3"], 3e6, "exit2")]
    exits = [{"name": n, "segment": h, "logits": lg, "num_classes": 2, "output_stride": 1, "policy": {},
              "point": p, "candidate": j}
             for n, h, lg, p, j in (("exit0c0", "head0c0", "l0", 0, 0), ("exit0c1", "head0c1", "l1", 0, 1),
                                    ("exit1", "head1", "l2", 1, 0), ("exit2", "head2", "l3", 2, 0))]
    manifest = {"schema_version": 1, "input": {"name": "image", "shape": [1, 3, 4, 4], "dtype": "float32"},
                "segments": segs, "exits": exits, "files": {s["file"]: "0" for s in segs}, "latency": {}}
    c = costs_from_package(Package(tmp_path, manifest))
    assert c.point.tolist() == [0, 0, 1, 2]
    assert c.chunk.tolist() == [4.0, 0.0, 8.0, 0.0] and c.head.tolist() == [1.0, 5.0, 2.0, 3.0]
    assert c.budgeted(1) == pytest.approx(9.0) and c.budgeted(3) == pytest.approx(15.0)
