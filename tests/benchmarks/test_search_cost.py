"""The search-cost benchmark's synthetic memos and figures (tiny, so the test stays fast)."""

from mesc.benchmarks.search_cost import measure, synthetic_memo


def test_synthetic_memo_puts_chunks_on_points():
    inter, union, conf, costs = synthetic_memo([0, 0, 1, 2], images=10)
    assert inter.shape == union.shape == (10, 4, 8) and conf.shape[:2] == (10, 4)
    assert (inter <= union).all() and ((conf >= 0) & (conf <= 1)).all()
    assert costs.point.tolist() == [0, 0, 1, 2] and costs.chunk[1] == 0.0 and (costs.chunk[[0, 2, 3]] > 0).all()


def test_measure_reports_the_search_against_the_fixed_heads():
    row = measure([0, 0, 1, 2], images=30, max_drop=2.0)
    assert row["architectures"] == 6 and row["exhaustive"] <= 6 and row["evaluated"] > 0
    # the search over heads includes the fixed heads' architectures: never worse under the bound
    assert row["chosen"]["cost"] <= row["fixed_heads"]["cost"] + 1e-12
    assert row["chosen"]["cost"] <= row["final_only_cost"] + 1e-12
    assert row["chosen"]["exits"][-1] == "exit3"


def test_measure_under_a_cost_bound_stays_within_it():
    """--max-cost-ratio: Eq. 6 with the bound a fraction of the final exit's cost."""
    row = measure([0, 0, 1, 2], images=30, max_cost_ratio=0.8)
    assert row["max_cost"] == 0.8 * row["final_only_cost"] and row["architectures"] == 6
    assert row["chosen"]["cost"] <= row["max_cost"] * (1 + 1e-9)
    # the search over heads includes the fixed heads' architectures: never less accurate under the bound
    assert row["chosen"]["miou"] >= row["fixed_heads"]["miou"] - 1e-12
