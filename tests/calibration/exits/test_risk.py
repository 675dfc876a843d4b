"""`calibrate --risk` (Learn then Test): the p-values against a loop written from the paper, the
fixed sequence stopping at its first failure, the loss against the exact mIoU drop, the guarantee
over many draws of a known population, DELTA edge cases, and the command's options and errors."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from mesc.calibration.exits.risk import (
    LOSS_RANGE,
    LossScale,
    check_risk,
    check_risk_images,
    control_risk,
    exits_taken,
    fixed_sequence,
    images_needed,
    learn_then_test,
    wsr_p_value,
)
from mesc.calibration.exits.search import Searcher
from mesc.errors import CalibrationError
from mesc.evaluation.metrics import miou
from risk_population import COSTS, GRID, population


def _wsr_loop(losses, bound, delta):
    """The WSR p-value of the LTT paper, one image at a time, losses mapped onto [0, 1]."""
    lo, hi = LOSS_RANGE
    x = [(min(max(v, lo), hi) - lo) / (hi - lo) for v in losses]
    a = (bound - lo) / (hi - lo)
    n = len(x)
    capital, best, var_before = 1.0, 1.0, 0.25
    total, squares = 0.0, 0.0
    for i, xi in enumerate(x, 1):
        nu = min(1.0, math.sqrt(2 * math.log(1 / delta) / (n * var_before)))
        capital *= 1 - nu * (xi - a)
        best = max(best, capital)
        total += xi
        mu = (0.5 + total) / (1 + i)
        squares += (xi - mu) ** 2
        var_before = (0.25 + squares) / (1 + i)
    return min(1.0, 1 / best)


@pytest.mark.parametrize("seed", range(4))
def test_wsr_p_value_matches_the_loop(seed):
    rng = np.random.default_rng(seed)
    losses = rng.uniform(-0.05, 0.08, (3, 150))
    losses[1] *= 0.1   # a config well within the bound
    losses[2, :5] = 2.0  # clipped to the range's top
    got = wsr_p_value(losses, 0.02, 0.1)
    want = [_wsr_loop(row, 0.02, 0.1) for row in losses]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[1] <= 0.1 < got[0]  # well within the bound passes, near it does not


def test_wsr_p_values_are_valid_at_the_null_boundary():
    # losses with mean exactly the bound: a p-value <= delta must come in at most ~delta of the draws
    rng = np.random.default_rng(0)
    bound, delta = 0.05, 0.1
    draws = rng.choice([0.0, 0.25], p=[0.8, 0.2], size=(4000, 200))
    rate = (wsr_p_value(draws, bound, delta) <= delta).mean()
    assert rate <= delta


def test_fixed_sequence_stops_at_the_first_failure():
    assert fixed_sequence([0.0, 0.01, 0.05, 0.2, 0.001], 0.1) == 3
    assert fixed_sequence([0.0, 0.5, 0.001], 0.1) == 1
    assert fixed_sequence([0.0, 0.01], 0.1) == 2


def test_images_needed_is_the_least_count_at_which_no_change_passes():
    need = images_needed(0.01, 0.1)
    assert wsr_p_value(np.zeros(need), 0.01, 0.1)[0] <= 0.1 < wsr_p_value(np.zeros(need - 1), 0.01, 0.1)[0]
    # a looser bound or a larger DELTA needs fewer images; a bound of 0 cannot be met
    assert images_needed(0.02, 0.1) < need and images_needed(0.01, 0.5) < need
    assert images_needed(0.0, 0.1) is None


@pytest.mark.parametrize("delta", [0, 1, -0.1, 1.5, float("nan"), float("inf"), True, "0.1"])
def test_delta_outside_zero_one_is_refused(delta):
    with pytest.raises(CalibrationError, match="--risk must be a probability strictly between 0 and 1"):
        check_risk(delta)


def test_risk_with_a_cost_bound_is_refused():
    with pytest.raises(CalibrationError, match="--risk bounds the mIoU drop; it goes with --max-drop"):
        check_risk(0.1, max_cost="60%")


def test_too_few_images_name_how_many_would_do():
    need = images_needed(0.01, 0.1)
    with pytest.raises(CalibrationError, match=rf"needs at least {need} even if no image's result changed, "
                                               rf"so at least (\d+) images in all") as err:
        check_risk_images(100, 1.0, 0.1)
    total = int(err.value.args[0].split("so at least ")[1].split()[0])
    check_risk_images(total, 1.0, 0.1)  # the count it names is enough
    with pytest.raises(CalibrationError):
        check_risk_images(total - 1, 1.0, 0.1)


def test_loss_is_the_exact_drop_when_early_exits_keep_the_unions():
    rng = np.random.default_rng(1)
    union = np.repeat(rng.integers(5, 60, (40, 1, 3)).astype(float), 2, axis=1)
    inter = np.floor(union * rng.uniform(0.3, 1.0, union.shape))
    taken = rng.integers(0, 2, 40)
    rows = np.arange(40)
    drop = miou(inter[:, 1].sum(0), union[:, 1].sum(0)) - miou(inter[rows, taken].sum(0), union[rows, taken].sum(0))
    loss = LossScale.fit(inter, union).losses(inter, union, taken)
    assert loss.mean() == pytest.approx(drop, rel=1e-12)


def test_exits_taken_is_the_first_passing_kept_exit():
    passes = np.array([[[True, False, False, True], [True, True, False, False]]])
    np.testing.assert_array_equal(exits_taken([0, 2, 3], passes), [0, 2, 3, 0])


# ---------------------------------------------------------------------------------------------
# the guarantee, on a population of known law

def _drop_pp(images, cfg):
    s = Searcher(*images, COSTS, th_pix_grid=GRID)
    return 100 * (s.reference().miou - s.assess(cfg).miou)


def test_the_guarantee_holds_over_many_calibration_draws():
    rng = np.random.default_rng(7)
    everyone = population(20000, rng)
    bound, delta, draws = 1.0, 0.2, 40
    drops = []
    for k in range(draws):
        inter, union, conf = population(300, rng)
        rc = control_risk(inter, union, conf, COSTS, bound, delta, th_pix_grid=GRID, th_img_steps=20, steps=8, seed=k)
        drops.append(_drop_pp(everyone, rc.chosen))
    drops = np.array(drops)
    assert (drops > bound).mean() <= delta
    # not the final exit alone every time: the choices use a fair part of the allowed drop
    assert np.median(drops) >= 0.25 * bound


def test_nothing_passing_leaves_the_final_exit_alone():
    rng = np.random.default_rng(3)
    inter, union, conf = population(300, rng)
    s = Searcher(inter, union, conf, COSTS, th_pix_grid=GRID, th_img_steps=20)
    order = [s.reference(), s.search(max_drop=20).best, s.search(max_drop=0.5).best]
    scale = LossScale.fit(inter, union)
    rc = learn_then_test(inter, union, conf, COSTS, order, 1.0, 0.1, scale, th_pix_grid=GRID)
    assert rc.passed == 1 and rc.chosen_index == 0 and rc.chosen.exits == ["exit1"]
    assert rc.p_values[1] > 0.1  # the aggressive one failed; the safer one after it was never tried


# ---------------------------------------------------------------------------------------------
# the command

@pytest.fixture(scope="module")
def toy_set(policy_package, tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return policy_package, generate(tmp_path_factory.mktemp("data") / "data", 80, seed=4, size=(32, 64))


def test_cli_risk_reports_the_guarantee_and_writes_its_choice(toy_set, tmp_path):
    import shutil

    from mesc.cli import cli
    from mesc.package import Package

    pkg = shutil.copytree(toy_set[0], tmp_path / "pkg")
    report = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(toy_set[1]), "--max-drop", "10",
                                   "--risk", "0.2", "--th-img-steps", "8", "--warn-images", "0", "--write",
                                   "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert "guarantee        with probability >= 0.8" in res.stdout
    rep = json.loads(report.read_text())
    risk = rep["risk"]
    assert risk["images"] == {"order": 20, "test": 60, "needed": images_needed(0.1, 0.2)}
    assert risk["order"][0]["exits"] == [rep["cost"]["exits"][-1]] and risk["order"][0]["passed"]
    assert risk["order"][risk["chosen_index"]]["exits"] == rep["chosen"]["exits"]
    assert all(o["passed"] == (i < risk["passed"]) for i, o in enumerate(risk["order"]))
    assert risk["cost_given_up"] == pytest.approx(rep["chosen"]["expected_cost"] - risk["plain"]["expected_cost"])
    written = Package.load(pkg).manifest["calibration"]
    assert written["exits"] == rep["chosen"]["exits"]


@pytest.mark.parametrize("args,message", [
    (["--max-cost", "60%", "--risk", "0.1"], "--risk bounds the mIoU drop; it goes with --max-drop"),
    (["--max-drop", "0", "--risk", "0.1"], "only the final exit alone can be guaranteed a drop of 0"),
    (["--max-drop", "1", "--risk", "0.1", "--policy", "learned"], "cannot also test its thresholds"),
])
def test_cli_refuses_bad_risk_before_reading_anything(args, message, tmp_path):
    _refused(args, message, tmp_path)


@pytest.mark.parametrize("value", ["1", "0", "-0.5", "nan"])
def test_cli_declares_the_risk_range(value, tmp_path):
    """--risk is a probability strictly between 0 and 1: click's range says so, before anything."""
    from mesc.cli import cli

    res = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "no-such-package"), "--data", str(tmp_path),
                                   "--max-drop", "1", "--risk", value])
    assert res.exit_code == 2 and "--risk" in res.output and "Traceback" not in res.output, res.output


def _refused(args, message, tmp_path):
    from mesc.cli import cli

    res = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "no-such-package"), "--data", str(tmp_path), *args])
    assert res.exit_code == 2 and res.output.startswith("mesc: error: ") and message in res.output, res.output
    assert "Traceback" not in res.output


def test_cli_refuses_too_few_images_before_running_an_exit(toy_set, tmp_path):
    from mesc.cli import cli

    cache = tmp_path / "memo.npz"
    res = CliRunner().invoke(cli, ["calibrate", str(toy_set[0]), "--data", str(toy_set[1]), "--max-drop", "1",
                                   "--risk", "0.1", "--cache", str(cache)])
    assert res.exit_code == 2, res.output
    assert "80 calibration images are too few" in res.output and "images in all" in res.output
    assert not cache.exists()  # refused before the exits ran


def test_an_order_not_starting_with_the_final_exit_is_refused():
    rng = np.random.default_rng(4)
    inter, union, conf = population(300, rng)
    s = Searcher(inter, union, conf, COSTS, th_pix_grid=GRID, th_img_steps=20)
    with pytest.raises(CalibrationError, match="must start with the final exit alone"):
        learn_then_test(inter, union, conf, COSTS, [s.search(max_drop=1).best], 1.0, 0.1, LossScale.fit(inter, union),
                        th_pix_grid=GRID)
