"""The --risk benchmark: its per-split figures are those of control_risk and plain calibration
recomputed on the same split, its summary counts them, and a set too small is recorded as the
command refuses it."""

import numpy as np
import pytest
from risk_population import COSTS, GRID, population

from mesc.benchmarks.results_md import risk_section
from mesc.benchmarks.risk import SCENE_SEED, measure
from mesc.calibration.exits.memo import Memo
from mesc.calibration.exits.risk import control_risk
from mesc.calibration.exits.search import Searcher


@pytest.fixture(scope="module")
def memo():
    inter, union, conf = population(700, np.random.default_rng(5))
    return Memo(["exit0", "exit1"], 3, np.asarray(GRID), inter, union, {"mess": conf},
                [f"{i:05d}.png" for i in range(700)])


def test_figures_are_recomputed_per_split_and_counted(memo):
    res = measure(memo, COSTS, [40, 450], [1.0], splits=2, delta=0.2, say=lambda m: None)
    small, case = res["cases"]
    assert "too few" in small["refused"] and not small["splits"]
    perm = np.random.default_rng([SCENE_SEED, 1]).permutation(memo.n)
    cal, test = perm[:450], perm[450:]
    conf = memo.conf("mess")
    rc = control_risk(memo.inter[cal], memo.union[cal], conf[cal], COSTS, 1.0, 0.2, exit_names=memo.exits,
                      th_pix_grid=GRID, seed=1)
    held = Searcher(memo.inter[test], memo.union[test], conf[test], COSTS, exit_names=memo.exits, th_pix_grid=GRID)
    want = 100 * (held.reference().miou - held.assess(rc.chosen).miou)
    assert case["splits"][1]["risk"]["drop_pp"] == pytest.approx(want, abs=1e-12)
    s = case["summary"]
    drops = [x["risk"]["drop_pp"] for x in case["splits"]]
    assert s["risk"]["exceed_fraction"] == np.mean(np.array(drops) > 1.0)
    assert s["given_up_ms"] == pytest.approx(s["risk"]["mean_ms"] - s["plain"]["mean_ms"])
    res.update(scenario="risk-test", date="now", wall_seconds=1.0, scenes=700, splits=2, delta=0.2,
               environment={"cpu": "cpu", "cpu_cores": 2, "onnxruntime": "x", "numpy": "y", "python": "z"})
    rows = [line for line in risk_section(res) if line.startswith("| 40 / 660") or line.startswith("| 450 / 250")]
    assert len(rows) == 2 and "refused" in rows[0]
