"""The policy benchmark scripts run end to end and write what they report (no speed asserted)."""

import json

import pytest

from mesc.benchmarks import policy_cost, policy_pooling, policy_share


def test_policy_share_reports_every_exit(tmp_path):
    pytest.importorskip("torch")  # it exports the demo model
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


def test_policy_pooling_counts_nodes_and_times_both_forms(tmp_path):
    out = tmp_path / "pooling.json"
    policy_pooling.main(["--sizes", "32x64", "--classes", "4", "--channels", "8", "--stride", "4", "--iters", "2",
                         "--warmup", "0", "--threads", "1", "--json", str(out)])
    res = json.loads(out.read_text())
    assert [(r["stride"], r["band"]) for r in res["nodes"]] == [(s, b) for s in (8, 16, 32) for b in ("paper", "wide")]
    assert all(r["pool"] < r["shift"] for r in res["nodes"])
    (run,) = res["latency"]
    assert run["size"] == [32, 64] and set(run["median_ms"]) == {"head+policy shift", "head+policy pool",
                                                                 "policy shift", "policy pool"}


def test_policy_cost_times_the_band_asked_for(tmp_path):
    fractions = {}
    for band in ("paper", "wide"):
        out = tmp_path / f"{band}.json"
        policy_cost.main(["--height", "32", "--width", "64", "--classes", "4", "--strides", "4", "--iters", "1",
                          "--host-iters", "1", "--edge-band", band, "--json", str(out)])
        run = json.loads(out.read_text())["runs"][0]
        assert run["band"] == band
        assert run["max_abs_diff_vs_numpy"] <= 1 / (32 * 64)  # the graph's c_img is that band's
        fractions[band] = run["band_fraction"]
    assert 0 < fractions["paper"] < fractions["wide"]


def test_edge_band_benchmark_measures_the_bands_of_the_labels(tmp_path):
    import numpy as np
    from PIL import Image

    from exported import export_toy

    import mesc
    from mesc.benchmarks import edge_band
    from mesc.datasets.synthetic import generate
    from mesc.package import Package
    from mesc.policy import edge_band as reference_band

    root = export_toy("skipnet", tmp_path / "pkg", 6, input_shape=(1, 3, 64, 128), strides=[2, 4, 4], verify=False)
    pkg = Package.load(root)
    data = generate(tmp_path / "scenes", 3, seed=1, size=(64, 128))
    out = tmp_path / "bands.json"
    edge_band.main([str(root), "--data", str(data), "--share-images", "2", "--rounds", "1", "--threads", "1",
                    "--json", str(out)])
    result = json.loads(out.read_text())
    images = [np.asarray(Image.open(p)) for p in sorted((data / "images").iterdir())[:2]]
    with mesc.load(root) as pipe:
        steps = [list(pipe.anytime([im], all_exits=True)) for im in images]
    for e, ex in enumerate(pkg.exits):
        got = result["share"]["exits"][ex.name]
        for band in ("paper", "wide"):
            shares = [reference_band(s[e][0].labels[None], ex.policy["stride"], band).mean() for s in steps]
            assert got[band]["mean"] == np.mean(shares) and got[band]["max"] == max(shares)
    lat = result["latency"]["packages"][str(root)]
    assert lat["band"] == ["paper"] * 3 and sum(lat["exit_shares"].values()) == 1
    assert result["latency"]["images"] == 3


def test_policy_kinds_benchmark_times_every_kind_and_agrees_with_numpy():
    from mesc.benchmarks.policy_kinds import measure
    from mesc.exporters.policy import in_graph_kinds

    r = measure(4, 16, 24, iters=2, threads=1)
    assert r["logits_shape"] == [1, 4, 16, 24] and set(r["kinds"]) == set(in_graph_kinds())
    for kind, v in r["kinds"].items():
        assert {"graph_ms", "host_numpy_ms", "onnx_bytes"} <= set(v)
        assert v["score_graph"] == pytest.approx(v["score_numpy"], rel=1e-4, abs=1e-4), kind
