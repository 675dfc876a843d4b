"""The policy benchmark scripts run end to end and write what they report (no speed asserted)."""

import json

import pytest

from mesc.benchmarks import policy_cost, policy_share


def test_policy_share_reports_every_exit(tmp_path):
    out = tmp_path / "share.json"
    policy_share.main(["--models", "demo", "--shape", "1x3x64x128", "--iters", "2", "--threads", "1",
                       "--json", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    assert list(run["exits"]) == ["exit0", "exit1", "exit2"]
    for row in run["exits"].values():
        assert 0.0 <= row["output_share"] < 1.0 and 0.0 <= row["native_share"] < 1.0
        assert row["head_ms"] > 0 and row["host_policy_ms"] > 0


def test_policy_cost_runs_on_a_small_map(tmp_path):
    out = tmp_path / "cost.json"
    policy_cost.main(["--height", "32", "--width", "64", "--classes", "4", "--strides", "2", "--json", str(out)])
    assert json.loads(out.read_text())


def test_policy_kinds_benchmark_times_every_kind_and_agrees_with_numpy():
    from mesc.benchmarks.policy_kinds import KINDS, measure

    r = measure(4, 16, 24, iters=2, threads=1)
    assert r["logits_shape"] == [1, 4, 16, 24] and set(r["kinds"]) == set(KINDS)
    for kind, v in r["kinds"].items():
        assert {"graph_ms", "host_numpy_ms", "onnx_bytes"} <= set(v)
        assert v["score_graph"] == pytest.approx(v["score_numpy"], rel=1e-4, abs=1e-4), kind
