"""The lean export: only a calibration report's chosen heads, with its thresholds."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mesc
from mesc.calibration.exits.search import Configuration
from mesc.cli import cli
from mesc.errors import ExportError, MescError
from mesc.exporters.export import ExportOptions, export
from mesc.package import Package
from toys import SHAPE, candidate_skipnet

TOY = str(Path(__file__).parents[1] / "toys.py")
# the chosen configuration: the deepest candidate at point 0, no exit at point 1, the final exit
CHOSEN = ["exit0c2", "exit2"]
TH = {"exit0c2": {"th_pix": 0.55, "th_img": 0.4}}


def _identity(**changed):
    """The package identity a calibration of the full candidate_skipnet package records."""
    model = candidate_skipnet()
    ident = {"model": f"{type(model).__module__}.{type(model).__qualname__}", "weights_sha256": None,
             "input_shape": list(SHAPE[1:]), "exits": ["exit0c0", "exit0c1", "exit0c2", "exit1c0", "exit1c1", "exit2"],
             "policy": ["mess"], "confidence": ["top1"], "band": ["paper"], "precision": "fp32"}
    return {**ident, **changed}


def _report(path, exits=CHOSEN, th=TH, identity=None, **chosen):
    """A report as `mesc calibrate --report` writes it (the fields the lean export reads)."""
    cfg = Configuration(mode="input-dependent", exits=list(exits),
                        th_pix={**{k: v["th_pix"] for k, v in th.items()}, exits[-1]: None},
                        th_img={**{k: v["th_img"] for k, v in th.items()}, exits[-1]: 0.0},
                        expected_cost=1.0, miou=0.5, exit_fraction={k: 0.5 for k in exits}).to_dict()
    final = Configuration(mode="budgeted", exits=["exit2"], th_pix={"exit2": None}, th_img={"exit2": 0.0},
                          expected_cost=2.0, miou=0.5, exit_fraction={"exit2": 1.0}).to_dict()
    rep = {"package": "out/cands", "package_identity": identity or _identity(), "policy": "mess",
           "chosen": {**cfg, **chosen}, "final_only": final,
           "cost": {"unit": "MFLOPs", "exits": ["exit0c0", "exit0c1", "exit0c2", "exit1c0", "exit1c1", "exit2"]}}
    path.write_text(json.dumps(rep))
    return path


def _options(**kw):
    return ExportOptions(input_shape=SHAPE, dynamic_batch=True, **kw)


@pytest.fixture(scope="module")
def lean_and_full(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean")
    full = export(candidate_skipnet(), tmp / "full", options=_options(strides=[2] * 6))
    lean = export(candidate_skipnet(), tmp / "lean",
                  options=_options(strides=[2] * 2, from_report=str(_report(tmp / "cal.json"))))
    return lean.root, full.root


def test_lean_package_keeps_only_the_chosen_heads_with_the_reports_thresholds(lean_and_full):
    lean = Package.load(lean_and_full[0])
    assert [e.name for e in lean.exits] == CHOSEN
    assert [(e.point, e.candidate) for e in lean.exits] == [(0, 2), (2, 0)]
    assert all(e.enabled for e in lean.exits)
    # point 1 has no head left, so its chunk joins the final segment; no unchosen head is on disk
    assert [s.name for s in lean.segments] == ["entry", "chunk0", "head0c2", "head2"]
    assert sorted(lean.manifest["files"]) == ["onnx/chunk0.onnx", "onnx/entry.onnx", "onnx/head0c2.onnx", "onnx/head2.onnx"]
    assert sorted(p.name for p in (lean.root / "onnx").iterdir()) == ["chunk0.onnx", "entry.onnx", "head0c2.onnx", "head2.onnx"]
    assert lean.policy("exit0c2")["th_pix"] == 0.55 and lean.policy("exit0c2")["th_img"] == 0.4
    assert lean.manifest["source"]["from_report"].endswith("cal.json")
    assert set(lean.manifest["verification"]) == set(CHOSEN)


def test_lean_package_runs_as_the_full_package_in_the_same_configuration(lean_and_full):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((10, *SHAPE[1:])).astype(np.float32) * np.geomspace(1, 30, 10, dtype=np.float32)[:, None,
                                                                                                              None, None]
    with mesc.load(lean_and_full[1]) as full, mesc.load(lean_and_full[0]) as lean:
        for ex in full.exit_names[:-1]:
            full.set_enabled(ex, ex in CHOSEN)
        full.set_thresholds("exit0c2", **TH["exit0c2"])
        want, got = full(x), lean(x)
    assert [r.exit for r in got] == [r.exit for r in want]
    assert len({r.exit for r in got}) == 2  # both exits take images: the thresholds decide
    for a, b in zip(got, want):
        assert (a.labels == b.labels).mean() > 0.999
        assert a.confidences.keys() == b.confidences.keys()
        np.testing.assert_allclose(list(a.confidences.values()), list(b.confidences.values()), atol=1e-3)


def test_lean_export_from_the_command_line(tmp_path):
    out = tmp_path / "lean"
    # an exit the report keeps with th_img None lets no image go ("never"): calibrate --write disables it, so
    # the lean package leaves it out
    rep = _report(tmp_path / "cal.json", exits=["exit0c1", "exit1c0", "exit2"],
                  th={"exit0c1": {"th_pix": 0.6, "th_img": 0.7}, "exit1c0": {"th_pix": 0.5, "th_img": None}},
                  identity=_identity(model="toys.py:candidate_skipnet"))
    res = CliRunner().invoke(cli, ["export", "--model", f"{TOY}:candidate_skipnet", "--input-shape", "1x3x32x64",
                                   "--from-report", str(rep), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    pkg = Package.load(out)
    assert [e.name for e in pkg.exits] == ["exit0c1", "exit2"]
    assert pkg.policy("exit0c1")["th_pix"] == 0.6 and pkg.policy("exit0c1")["th_img"] == 0.7


def _refused(tmp_path, message, report=None, **kw):
    out = tmp_path / "lean"
    with pytest.raises(ExportError, match=message):
        export(candidate_skipnet(), out, options=_options(from_report=str(report), **kw))
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_report_naming_exits_the_model_lacks_is_refused(tmp_path):
    rep = _report(tmp_path / "cal.json", exits=["exit0c7", "exit2"], th={"exit0c7": TH["exit0c2"]})
    _refused(tmp_path, r"exit\(s\) \['exit0c7'\] are not exits of this model", rep)


def test_a_report_keeping_two_candidates_of_one_point_is_refused(tmp_path):
    rep = _report(tmp_path / "cal.json", exits=["exit0c0", "exit0c2", "exit2"],
                  th={"exit0c0": TH["exit0c2"], "exit0c2": TH["exit0c2"]})
    _refused(tmp_path, r"keeps \['exit0c0', 'exit0c2'\], candidate heads of one exit point", rep)


@pytest.mark.parametrize("content, message", [
    ("not json {", r"cal.json: not a JSON file"),
    (json.dumps({"segments": [], "latency_ms": {}}), r"cal.json: not a mesc calibration report"),
    (json.dumps([1, 2]), r"not a mesc calibration report"),
])
def test_a_file_that_is_no_calibration_report_is_refused(tmp_path, content, message):
    rep = tmp_path / "cal.json"
    rep.write_text(content)
    _refused(tmp_path, message, rep)


def test_a_report_with_a_bad_threshold_or_policy_is_refused(tmp_path):
    rep = _report(tmp_path / "cal.json", th={"exit0c2": {"th_pix": 1.5, "th_img": 0.4}})
    _refused(tmp_path, r"chosen.th_pix\['exit0c2'\] must be a number in \[0, 1\], got 1.5", rep)
    rep = _report(tmp_path / "cal.json", policy="fft")
    _refused(tmp_path, r"uses the 'fft' policy; only MESS thresholds", rep)


def test_a_missing_report_and_conflicting_options_are_refused(tmp_path):
    _refused(tmp_path, r"--from-report .*nope.json: no such file", tmp_path / "nope.json")
    rep = _report(tmp_path / "cal.json")
    _refused(tmp_path, r"--from-report chooses the exits and their thresholds; drop --exits, --th-img", rep,
             exits=[2, 5], th_img=0.5)


def test_the_cli_refuses_a_bad_report_with_one_line_and_status_2(tmp_path):
    rep = _report(tmp_path / "cal.json", exits=["exit0c0", "exit0c1", "exit2"],
                  th={"exit0c0": TH["exit0c2"], "exit0c1": TH["exit0c2"]},
                  identity=_identity(model="toys.py:candidate_skipnet"))
    res = CliRunner().invoke(cli, ["export", "--model", f"{TOY}:candidate_skipnet", "--input-shape", "1x3x32x64",
                                   "--from-report", str(rep), "-o", str(tmp_path / "lean")])
    assert res.exit_code == 2
    assert "candidate heads of one exit point" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "lean").exists()


def test_an_output_inside_the_report_is_refused(tmp_path):
    rep = _report(tmp_path / "cal.json")
    with pytest.raises(MescError, match="cal.json"):
        export(candidate_skipnet(), rep / "lean", options=_options(from_report=str(rep)))


# what the report was computed on ------------------------------------------------------------------

@pytest.mark.parametrize("changed, kw, field", [
    ({"confidence": ["entropy"]}, {}, "confidence"),  # thresholds for entropy heads into top-1 heads
    ({}, {"policy": "entropy"}, "confidence"),
    ({"model": "demo"}, {}, "model"),  # another model with the same exit names
    ({"weights_sha256": "0" * 64}, {}, "weights_sha256"),
    ({"input_shape": [3, 64, 128]}, {}, "input_shape"),
    ({"band": ["wide"]}, {}, "band"),
    ({}, {"edge": False}, "band"),
    ({"policy": ["mean_top1"]}, {}, "policy"),
    ({"precision": "int8"}, {}, "precision"),
    ({"exits": ["exit0", "exit1", "exit2"]}, {}, "exits"),  # a package of another model
])
def test_a_report_of_another_package_is_refused_naming_the_field_and_both_values(tmp_path, changed, kw, field):
    rep = _report(tmp_path / "cal.json", identity=_identity(**changed))
    recorded = _identity(**changed)[field]
    _refused(tmp_path, rf"computed on a package whose {field} (is|are) {re.escape(repr(recorded))}, and this "
                       rf"(export's|model's) {field} (is|are) ", rep, **kw)


def test_a_report_without_the_package_identity_is_refused(tmp_path):
    rep = _report(tmp_path / "cal.json")
    data = json.loads(rep.read_text())
    del data["package_identity"]
    rep.write_text(json.dumps(data))
    _refused(tmp_path, r"does not record the package it was computed on", rep)
