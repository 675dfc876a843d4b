"""A new policy kind, ``mean_margin``, written as a test fixture in two modules of its own
(:mod:`margin_kind`: the numpy kind; :mod:`margin_graph`: its in-graph builder) and nothing
else: registered, it goes through export, run, calibrate and ``mesc inspect`` like the
built-in kinds, on an in-graph package and on a host-policy one."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import margin_graph
import margin_kind
import mesc
from mesc.errors import MescError, PackageError
from mesc.policy import KIND_THRESHOLDS, NEVER_EXIT, POLICY_KINDS, exit_decision, get_kind, get_policy

KIND = margin_kind.NAME


@pytest.fixture
def margin():
    margin_kind.register()
    margin_graph.register()
    try:
        yield get_kind(KIND)
    finally:
        margin_graph.unregister()
        margin_kind.unregister()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("data") / "data", 10, seed=5, size=(32, 64))


def _export(dest, policy):
    pytest.importorskip("torch")
    from toys import skipnet

    from mesc.exporters.export import ExportOptions, export

    return export(skipnet(num_classes=6), dest, options=ExportOptions(policy=policy, dynamic_batch=True,
                                                                      verify=False)).root


@pytest.fixture(scope="module")
def in_graph_pkg(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("margin") / "pkg", "top1")


@pytest.fixture(scope="module")
def host_pkg(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("margin_host") / "pkg", None)


def images(data):
    return [np.asarray(Image.open(p)) for p in sorted((Path(data) / "images").glob("*.png"))]


def calibrate_margin(pkg_dir, data, write=True, **options):
    from mesc.calibration.exits import calibrate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few images, and maybe an exit that takes them all
        return calibrate(pkg_dir, data, max_drop=options.pop("max_drop", 3), policy=KIND, write=write,
                         th_img_steps=6, warn_images=0, **options)


def predicted_exits(pkg, scores):
    """Per image: the first enabled early exit whose written policy lets it go, else the final."""
    names = [ex.name for ex in pkg.exits]
    return [names[next((e for e, ex in enumerate(pkg.exits[:-1]) if ex.enabled
                        and exit_decision([row[e]], ex.policy)[0]), len(names) - 1)] for row in scores]


def test_registering_the_kind_adds_it_to_every_list_and_removing_it_takes_it_out(margin):
    from mesc.calibration.exits.memo import memo_kinds
    from mesc.exporters.policy import in_graph_kinds

    assert KIND in POLICY_KINDS and KIND in in_graph_kinds() and KIND in memo_kinds()
    assert KIND_THRESHOLDS[KIND] == ("th_img",) and NEVER_EXIT[KIND] == {"th_img": 1.0}
    margin_graph.unregister()
    margin_kind.unregister()
    assert KIND not in POLICY_KINDS and KIND not in in_graph_kinds() and KIND not in memo_kinds()
    with pytest.raises(MescError, match="policy kind must be one of"):
        get_kind(KIND)
    margin_kind.register()
    margin_graph.register()


def test_the_reference_is_the_margin_and_the_graph_agrees(margin):
    import onnxruntime as ort

    from mesc.benchmarks.policy_cost import identity_head
    from mesc.exporters.policy import append_kind

    logits = np.zeros((2, 3, 2, 2), np.float32)
    logits[0, 0] = np.log(6.0)  # p = (6, 1, 1) / 8 everywhere: margin 5/8
    assert margin.score(logits, {}) == pytest.approx([5 / 8, 0.0])  # image 1: three-way tie
    x = (np.random.default_rng(0).normal(size=(2, 5, 8, 12)) * 3).astype(np.float32)
    model = append_kind(identity_head(5, 8, 12), "logits", "exit", KIND)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, score = sess.run(["exit_labels", "exit_confidence"], {"x": x})
    np.testing.assert_allclose(score, margin.score(x, {}), rtol=1e-5)
    np.testing.assert_array_equal(labels, x.argmax(1))
    assert get_policy(KIND, th=0.5)(logits).tolist() == [True, False]


def test_the_manifest_takes_the_kind_with_its_threshold(margin, host_pkg, tmp_path):
    from mesc.package import Package

    d = shutil.copytree(host_pkg, tmp_path / "pkg")
    m = json.loads((d / "mesc.json").read_text())
    for ex in m["exits"]:
        ex["policy"] = {"kind": KIND, "th_img": 0.5}
    (d / "mesc.json").write_text(json.dumps(m))
    assert Package.load(d).policy(m["exits"][0]["name"]) == {"kind": KIND, "th_img": 0.5}
    del m["exits"][0]["policy"]["th_img"]
    (d / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=f"missing 'th_img' \\(the {KIND} policy's threshold\\)"):
        Package.load(d)


def test_export_calibrate_run_and_inspect_an_in_graph_package(margin, in_graph_pkg, data, tmp_path):
    from mesc.cli import cli
    from mesc.package import Package

    pkg_dir = shutil.copytree(in_graph_pkg, tmp_path / "pkg")
    out = calibrate_margin(pkg_dir, data)  # the heads run MESS: the margin is compiled into them
    pkg = Package.load(pkg_dir)
    assert {ex.policy["kind"] for ex in pkg.exits} == {KIND}
    assert all(ex.th_pix_input is None and ex.confidence for ex in pkg.exits)
    assert pkg.manifest["calibration"]["policy"] == KIND
    scores = out.memo.conf(KIND)[:, :, 0]
    expected = predicted_exits(pkg, scores)
    with mesc.load(pkg_dir) as pipe:
        results = pipe(images(data))
    assert [r.exit for r in results] == expected
    for name in pipe.exit_names:
        assert expected.count(name) / len(expected) == pytest.approx(
            out.report["chosen"]["exit_fraction"].get(name, 0.0))
    assert results[0].confidences[pipe.exit_names[0]] == pytest.approx(scores[0, 0], rel=1e-5, abs=1e-6)
    # calibrating again reads the heads' in-graph margin and checks it against the numpy one
    again = calibrate_margin(pkg_dir, data, write=False)
    assert again.memo.meta["conf_check_max_abs"] < 1e-5
    res = CliRunner().invoke(cli, ["inspect", str(pkg_dir)])
    assert res.exit_code == 0, res.output
    assert f"  {KIND}  " in res.output and f"{KIND} (host)" not in res.output


def test_calibrate_run_and_inspect_a_host_policy_package(margin, host_pkg, data, tmp_path):
    from mesc.cli import cli
    from mesc.package import Package

    pkg_dir = shutil.copytree(host_pkg, tmp_path / "host")
    files = json.loads((pkg_dir / "mesc.json").read_text())["files"]
    out = calibrate_margin(pkg_dir, data, max_drop=50)
    pkg = Package.load(pkg_dir)
    assert pkg.manifest["files"] == files and {ex.policy["kind"] for ex in pkg.exits} == {KIND}
    with mesc.load(pkg_dir) as pipe:
        results = pipe(images(data))
    assert [r.exit for r in results] == predicted_exits(pkg, out.memo.conf(KIND)[:, :, 0])
    res = CliRunner().invoke(cli, ["inspect", str(pkg_dir)])
    assert res.exit_code == 0 and f"{KIND} (host)" in res.output, res.output
