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
