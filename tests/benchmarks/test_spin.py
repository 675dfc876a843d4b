"""The spin benchmark: every mode timed on every exit, written where asked. Timings are not
asserted (benchmarks/results holds them); what is asserted is that each mode ran the same
package through every exit and that the ratios are to that mode's final exit."""

import json

import pytest

from mesc.benchmarks import spin
from mesc.package import Package


def test_every_spin_mode_times_every_exit(policy_package, tmp_path):
    out = tmp_path / "spin.json"
    assert spin.main(["--package", str(policy_package), "--iters", "4", "--warmup", "1", "--threads", "2",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    exits = [e.name for e in Package.load(policy_package).exits]
    assert list(result["modes"]) == ["run", "off", "on"]
    for mode, r in result["modes"].items():
        assert list(r["median_ms"]) == exits and all(v > 0 for v in r["median_ms"].values())
        assert r["ratio_to_final"][exits[-1]] == 1.0
        assert r["ratio_to_final"][exits[0]] == pytest.approx(r["median_ms"][exits[0]] / r["median_ms"][exits[-1]])
    assert result["modes"]["run"]["rounds"] == 4 and result["modes"]["on"]["rounds"] == 1
