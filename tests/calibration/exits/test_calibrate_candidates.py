"""`calibrate()` and `mesc calibrate` on a package with candidate heads (two at exit point 0):
every candidate is evaluated once as an exit, the search keeps at most one head per point,
``--write`` enables it and disables the others, and the runtime then gives what the report
predicted. The package comes from the conftest's stand-in for the candidate export."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_checks import input_dependent_figures

from mesc.calibration.exits import calibrate, format_report
from mesc.calibration.exits.calibration import CalibrationWarning
from mesc.cli import cli
from mesc.package import Package

CLASSES = 6
NAMES = ["exit0c0", "exit0c1", "exit1", "exit2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("data") / "data", 12, seed=5, size=(32, 64))


@pytest.fixture
def pkg_dir(candidate_package, tmp_path):
    return shutil.copytree(candidate_package, tmp_path / "pkg")


def _record_latency(pkg_dir, ms):
    pkg = Package.load(pkg_dir)
    pkg.manifest["latency"] = {"onnxruntime/cpu": ms}
    pkg.save()


# candidate 1 is the cheaper head here, so the cheapest configuration keeps it
LATENCY = {"chunk0": 1.0, "head0c0": 0.8, "head0c1": 0.2, "chunk1": 1.0, "head1": 0.3, "head2": 0.5}


def test_the_memo_evaluates_every_candidate_as_an_exit(candidate_package, data):
    from mesc.calibration.exits.memo import evaluate, load_calibration_set
    from mesc.evaluation.metrics import class_counts
    from mesc.runtime import load

    memo = evaluate(candidate_package, data)
    assert memo.exits == NAMES and memo.inter.shape == (12, 4, CLASSES)
    # each column is that head's own prediction: a budgeted run of the exit (disabled ones too)
    items = load_calibration_set(data, (32, 64), CLASSES)
    with load(candidate_package) as pipe:
        for e, name in enumerate(NAMES):
            for i, r in enumerate(pipe([im for _, im, _ in items], exit=name)):
                inter, union = class_counts(r.labels, items[i][2], CLASSES)
                assert np.array_equal(memo.inter[i, e], inter) and np.array_equal(memo.union[i, e], union)
    assert not np.array_equal(memo.inter[:, 0], memo.inter[:, 1])  # two different heads


def _enabled(pkg_dir):
    return {ex.name: ex.enabled for ex in Package.load(pkg_dir).exits}


def test_write_keeps_the_cheaper_candidate_and_the_runtime_follows(pkg_dir, data):
    from mesc.runtime import load

    _record_latency(pkg_dir, LATENCY)
    assert _enabled(pkg_dir) == {"exit0c0": True, "exit0c1": False, "exit1": True, "exit2": True}
    with pytest.warns(CalibrationWarning):  # exit0c1 takes every image: said, not refused
        out = calibrate(pkg_dir, data, max_drop=100, write=True, warn_images=0, th_img_steps=8)
    rep = out.report
    # everything anything goes: every image leaves at the cheapest head of point 0
    assert rep["chosen"]["exits"] == ["exit0c1", "exit2"]
    assert rep["chosen"]["exit_fraction"] == {"exit0c1": 1.0, "exit2": 0.0}
    assert rep["chosen"]["expected_cost"] == pytest.approx(1.0 + 0.2)
    assert _enabled(pkg_dir) == {"exit0c0": False, "exit0c1": True, "exit1": False, "exit2": True}
    written = Package.load(pkg_dir).manifest["calibration"]
    assert written["points"] == [{"point": 0, "candidates": ["exit0c0", "exit0c1"], "kept": "exit0c1"},
                                 {"point": 1, "candidates": ["exit1"], "kept": None},
                                 {"point": 2, "candidates": ["exit2"], "kept": "exit2"}]
    with load(pkg_dir) as pipe:
        miou, fractions = input_dependent_figures(pipe, data, CLASSES)
    assert fractions == {"exit0c0": 0.0, "exit0c1": 1.0, "exit1": 0.0, "exit2": 0.0}
    assert miou == pytest.approx(rep["chosen"]["miou"], abs=1e-9)
    # fixed heads (candidate 0 at point 0): everything at exit0c0 costs 1.8
    assert rep["fixed_heads_best"]["exits"] == ["exit0c0", "exit2"]
    assert rep["fixed_heads_best"]["expected_cost"] == pytest.approx(1.8)
    assert rep["gain_over_fixed_heads"]["cost"] == pytest.approx(1 - 1.2 / 1.8)


def test_a_cost_bound_mixes_exits_as_predicted(pkg_dir, data):
    from mesc.runtime import load

    _record_latency(pkg_dir, LATENCY)
    out = calibrate(pkg_dir, data, max_cost="80%", write=True, warn_images=0, th_img_steps=8)
    chosen = out.report["chosen"]
    points = [{"exit0c0": 0, "exit0c1": 0, "exit1": 1, "exit2": 2}[e] for e in chosen["exits"]]
    assert len(set(points)) == len(points) and chosen["exits"][-1] == "exit2"
    assert sum(f > 0 for f in chosen["exit_fraction"].values()) >= 2  # the check below means something
    assert chosen["expected_cost"] <= 0.8 * (1.0 + 1.0 + 0.5) + 1e-9
    enabled = _enabled(pkg_dir)
    assert {e for e, on in enabled.items() if on} == set(chosen["exits"])
    with load(pkg_dir) as pipe:
        miou, fractions = input_dependent_figures(pipe, data, CLASSES)
    assert miou == pytest.approx(chosen["miou"], abs=1e-9)
    assert fractions == pytest.approx({e: chosen["exit_fraction"].get(e, 0.0) for e in NAMES})


def test_the_report_lists_every_architecture_and_the_front_heads(candidate_package, data, tmp_path):
    # prune=False: every architecture searched in full, so each has its own best to list
    out = calibrate(candidate_package, data, max_drop=1.0, warn_images=0, th_img_steps=8,
                    report=tmp_path / "cal.json", prune=False)
    rep = json.loads((tmp_path / "cal.json").read_text())
    assert rep["candidates"] is True and rep["cost"]["point"] == [0, 0, 1, 2]
    # what it was computed on, for `mesc export --from-report` to check
    from mesc.calibration.exits.report import package_identity
    from mesc.package import Package

    manifest = Package.load(candidate_package).manifest
    assert rep["package_identity"] == package_identity(manifest, "fp32")
    assert rep["package_identity"]["exits"] == NAMES and rep["package_identity"]["precision"] == "fp32"
    assert rep["package_identity"]["confidence"] == sorted({e["policy"]["confidence"] for e in manifest["exits"]})
    archs = {tuple(a["exits"]): a for a in rep["architectures"]}
    assert set(archs) == {("exit2",), ("exit0c0", "exit2"), ("exit0c1", "exit2"), ("exit1", "exit2"),
                          ("exit0c0", "exit1", "exit2"), ("exit0c1", "exit1", "exit2")}
    assert [k for k, a in archs.items() if not a["fixed_heads"]] == [("exit0c1", "exit2"), ("exit0c1", "exit1", "exit2")]
    for a in rep["architectures"]:  # each the best of its heads: none beats the chosen one
        assert a["best"]["exits"] == a["exits"] and a["seconds"] >= 0
        if a["meets_bound"]:
            assert a["best"]["expected_cost"] >= rep["chosen"]["expected_cost"] - 1e-12
    assert rep["search"]["architectures"] == 6
    for p in rep["pareto"]:  # an architecture (ending at the final exit) or one exit alone
        assert p["heads"][-1] == "exit2" or (len(p["heads"]) == 1 and p["exits"] == "budgeted")
    text = format_report(out.report)
    assert "architectures    the best configuration of each choice of heads (6; * meets the bound):" in text
    assert "fixed heads      exits " in text and "6 of 6 architectures (choices of heads) exhaustively" in text
    assert "  exit     point  kept" in text


def test_the_cli_names_the_disabled_heads(pkg_dir, data, tmp_path):
    _record_latency(pkg_dir, LATENCY)
    res = CliRunner().invoke(cli, ["calibrate", str(pkg_dir), "--data", str(data), "--max-drop", "100",
                                   "--write", "--th-img-steps", "8", "--warn-images", "0"])
    assert res.exit_code == 0, res.output
    assert f"written          mess policy and thresholds to {pkg_dir}/mesc.json; disabled exits: exit0c0, exit1\n" in res.output
    assert 'dropped heads (exit0c0, exit1) are written as "enabled": false' in res.output


def test_all_exits_keeps_a_head_at_every_point(candidate_package, data):
    full = calibrate(candidate_package, data, max_drop=1.0, all_exits=True, warn_images=0, th_img_steps=8,
                     prune=False)
    assert sorted(tuple(a["exits"]) for a in full.report["architectures"]) == \
        [("exit0c0", "exit1", "exit2"), ("exit0c1", "exit1", "exit2")]
    assert full.report["chosen"]["exits"][1:] == ["exit1", "exit2"]
    # pruned: the same two architectures make the space, the same choice
    out = calibrate(candidate_package, data, max_drop=1.0, all_exits=True, warn_images=0, th_img_steps=8)
    assert out.report["search"]["architectures"] == 2 and out.report["chosen"] == full.report["chosen"]
    assert {tuple(a["exits"]) for a in out.report["architectures"]} <= \
        {("exit0c0", "exit1", "exit2"), ("exit0c1", "exit1", "exit2")}


def test_plot_colours_the_front_by_heads(candidate_package, data, tmp_path):
    pytest.importorskip("matplotlib")
    calibrate(candidate_package, data, max_drop=1.0, warn_images=0, th_img_steps=8, plot=tmp_path / "p.png")
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size[0] > 100


def test_a_package_without_candidates_reports_as_before(policy_package, data):
    out = calibrate(policy_package, data, max_drop=1.0, warn_images=0, th_img_steps=8)
    text = format_report(out.report)
    assert out.report["candidates"] is False and "point" not in text and "architectures    " not in text
    assert "exit subsets exhaustively" in text
    assert out.report["fixed_heads_best"] == out.report["chosen"]


def test_write_refuses_two_heads_at_one_point(pkg_dir):
    from mesc.calibration.exits.manifest import write_configuration
    from mesc.calibration.exits.search import Configuration
    from mesc.errors import MescError

    before = (pkg_dir / "mesc.json").read_bytes()
    cfg = Configuration(mode="input-dependent", exits=["exit0c0", "exit0c1", "exit2"],
                        th_pix={"exit0c0": 0.9, "exit0c1": 0.9, "exit2": None},
                        th_img={"exit0c0": 0.5, "exit0c1": 0.5, "exit2": 0.0}, expected_cost=1.0, miou=0.5,
                        exit_fraction={"exit0c0": 0.5, "exit0c1": 0.25, "exit2": 0.25})
    with pytest.raises(MescError, match=r"keeps two heads at exit point 0 \(exit0c0 and exit0c1\)"):
        write_configuration(Package.load(pkg_dir), cfg)
    cfg.exits = ["exit9", "exit2"]
    with pytest.raises(MescError, match=r"keeps exits \['exit9'\] that the package does not have"):
        write_configuration(Package.load(pkg_dir), cfg)
    assert (pkg_dir / "mesc.json").read_bytes() == before


def test_a_bound_only_a_candidate_meets(pkg_dir, data):
    """1.5 ms: every image at exit0c0 costs 1.8 ms, so only the cheaper candidate fits; the
    report says the fixed heads miss the bound."""
    _record_latency(pkg_dir, LATENCY)
    out = calibrate(pkg_dir, data, max_cost=1.5, warn_images=0, th_img_steps=8)
    rep = out.report
    assert rep["chosen"]["exits"][0] == "exit0c1" and rep["chosen"]["expected_cost"] <= 1.5 + 1e-9
    assert rep["fixed_heads_meet_bound"] is False and rep["fixed_heads_best"]["expected_cost"] > 1.5
    assert not any(a["meets_bound"] for a in rep["architectures"] if a["fixed_heads"])
    assert "(misses the bound); the head search:" in format_report(rep)


def test_the_cli_warns_when_the_choice_overfits(pkg_dir, data, capfd):
    """Six architectures on twelve images: the text says so and the CLI warns, pointing to --risk."""
    from mesc.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["calibrate", str(pkg_dir), "--data", str(data), "--max-drop", "100", "--th-img-steps", "8",
              "--warn-images", "0"])
    out, err = capfd.readouterr()
    assert stop.value.code == 0, err
    assert "mesc: warning: chosen among 6 architectures on 12 calibration images" in err and "--risk DELTA" in err
    assert "selection        chosen among 6 architectures (choices of heads) on 12 calibration images" in out
