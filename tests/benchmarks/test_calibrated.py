"""The calibrated-run benchmark: what the runtime measures must be what the memo predicted.

Timings are not asserted; the accuracy side is exact: the labels and exits the runtime returns
under the chosen thresholds give the same test-split mIoU and exit distribution as the memoised
evaluation of that split."""

import json
from pathlib import Path

import pytest

from mesc import models


@pytest.mark.slow
def test_calibrated_run_matches_the_memo_on_the_test_split(tmp_path):
    pytest.importorskip("torch")
    if not Path(models.__file__).with_name("demo.pt").is_file():
        pytest.skip("the trained demo checkpoint (mesc/models/demo.pt) is not there")
    from mesc.benchmarks import calibrated

    out = tmp_path / "calibrated.json"
    calibrated.main(["--calib", "32", "--test", "24", "--rounds", "1", "--bounds", "1,5", "--threads", "1",
                     "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["images"] == {"calib": 32, "test": 24}
    assert result["final_only"]["mean_ms"] > 0
    assert [c["max_drop_pp"] for c in result["configurations"]] == [1.0, 5.0]
    for c in result["configurations"]:
        measured, memo = c["measured"], c["test_memo"]
        assert measured["miou"] == pytest.approx(memo["miou"], abs=1e-9)
        assert measured["drop_pp"] == pytest.approx(memo["drop_pp"], abs=1e-7)
        assert measured["exit_fraction"] == pytest.approx(memo["exit_fraction"], abs=1e-12)
        assert sum(measured["exit_fraction"].values()) == pytest.approx(1.0)
        assert c["predicted"]["drop_pp"] <= c["max_drop_pp"] + 1e-9
        assert len(measured["mean_ms_rounds"]) == 1


def test_candidate_packages_run_the_searched_and_the_fixed_heads(tmp_path):
    from mesc.benchmarks import calibrated
    from mesc.datasets.synthetic import generate
    from mesc.exporters.export import ExportOptions, export

    import toys

    pkg = export(toys.candidate_net(), tmp_path / "pkg", options=ExportOptions(policy="top1", verify=False))
    shape = tuple(pkg.input.shape[2:])
    calib, test = (generate(tmp_path / n, 12, seed=s, size=shape) for n, s in (("calib", 1), ("test", 2)))
    result = calibrated.measure(pkg.root, calib, test, [100.0], rounds=1, threads=1, say=lambda m: None)
    by_heads = {c["heads"]: c for c in result["configurations"]}
    assert set(by_heads) == {"searched", "fixed heads"}
    assert all(e in ("exit0c0", "exit1", "exit2") for e in by_heads["fixed heads"]["exits"])
    for c in by_heads.values():  # what the runtime did is what the memo of the test split says
        assert c["measured"]["miou"] == pytest.approx(c["test_memo"]["miou"], abs=1e-9)
        assert c["measured"]["exit_fraction"] == pytest.approx(c["test_memo"]["exit_fraction"], abs=1e-12)
