"""`calibrate --policy KIND --write` for every policy kind: the kind is compiled into the heads,
the runtime then takes the exits the report predicted, and what cannot take a kind is refused."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mesc
from mesc.calibration.exits import calibrate
from mesc.calibration.exits.decision import learned_scores
from mesc.cli import cli
from mesc.errors import MescError
from mesc.package import Package
from mesc.policy import exit_decision, policy_scores


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("data") / "data", 10, seed=5, size=(32, 64))


@pytest.fixture
def pkg_dir(policy_package, tmp_path):
    return shutil.copytree(policy_package, tmp_path / "pkg")


def images(data):
    return [np.asarray(Image.open(p)) for p in sorted((Path(data) / "images").glob("*.png"))]


def write(pkg_dir, data, kind, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few images, and maybe an exit that takes them all
        return calibrate(pkg_dir, data, max_drop=options.pop("max_drop", 3), policy=kind, write=True,
                         th_img_steps=6, warn_images=0, **options)


def predicted_exits(pkg, scores):
    """Per image: the first enabled early exit whose written policy lets it go, else the final."""
    names = [ex.name for ex in pkg.exits]
    out = []
    for row in scores:
        e = next((e for e, ex in enumerate(pkg.exits[:-1]) if ex.enabled
                  and exit_decision([row[e]], ex.policy)[0]), len(names) - 1)
        out.append(names[e])
    return out


@pytest.mark.parametrize("kind", ["mean_entropy", "fft", "learned"])
def test_the_runtime_takes_the_exits_the_report_predicted(pkg_dir, data, kind):
    out = write(pkg_dir, data, kind)
    pkg = Package.load(pkg_dir)
    assert {ex.policy["kind"] for ex in pkg.exits} == {kind}
    assert all(ex.th_pix_input is None for ex in pkg.exits)
    heads = [pkg.segment(ex.segment) for ex in pkg.exits]
    assert not any(t.name.endswith("_th_pix") for seg in heads for t in seg.inputs)
    assert pkg.manifest["calibration"]["policy"] == kind

    scores = learned_scores(out.memo, out.nets) if kind == "learned" else out.memo.conf(kind)[:, :, 0]
    expected = predicted_exits(pkg, scores)
    with mesc.load(pkg_dir) as pipe:
        results = pipe(images(data))
    assert [r.exit for r in results] == expected
    chosen = out.report["chosen"]
    for name in pipe.exit_names:
        assert expected.count(name) / len(expected) == pytest.approx(chosen["exit_fraction"].get(name, 0.0))
    # the heads' scores are the host reference's (the learned one: the trained network's)
    first = results[0].confidences[pipe.exit_names[0]]
    assert first == pytest.approx(scores[0, 0], rel=1e-5, abs=1e-6)


def test_writing_mess_again_restores_the_mess_heads(pkg_dir, data):
    before = json.loads((pkg_dir / "mesc.json").read_text())
    write(pkg_dir, data, "fft")
    write(pkg_dir, data, "mess")
    pkg = Package.load(pkg_dir)
    for ex, old in zip(pkg.exits, before["exits"]):
        assert "kind" not in ex.policy  # MESS is written as before policy kinds, for older readers
        assert ex.th_pix_input == old["th_pix_input"] and {"th_pix", "th_img"} <= set(ex.policy)
        assert "lo" not in ex.policy and "hi" not in ex.policy
    assert [[t.as_dict() for t in s.inputs] for s in pkg.segments] == [s["inputs"] for s in before["segments"]]
    with mesc.load(pkg_dir) as pipe:
        assert len(pipe(images(data))) == 10


def test_a_mess_write_leaves_the_heads_alone(pkg_dir, data):
    files = json.loads((pkg_dir / "mesc.json").read_text())["files"]
    write(pkg_dir, data, "mess")
    m = json.loads((pkg_dir / "mesc.json").read_text())
    assert m["files"] == files and not any("kind" in ex["policy"] for ex in m["exits"])


def test_a_host_policy_package_runs_the_kind_from_the_logits(data, tmp_path):
    from exported import export_toy

    pkg_dir = export_toy("skipnet", tmp_path / "host", 6, policy=None, dynamic_batch=True, verify=False)
    files = json.loads((pkg_dir / "mesc.json").read_text())["files"]
    out = write(pkg_dir, data, "mean_top1", max_drop=50)
    pkg = Package.load(pkg_dir)
    assert pkg.manifest["files"] == files and {ex.policy["kind"] for ex in pkg.exits} == {"mean_top1"}
    with mesc.load(pkg_dir) as pipe:
        results = pipe(images(data))
    assert [r.exit for r in results] == predicted_exits(pkg, out.memo.conf("mean_top1")[:, :, 0])
    with pytest.raises(MescError, match="learned policy runs in the exit heads' graphs.*--policy none"):
        write(pkg_dir, data, "learned")


def test_prepared_graphs_or_engines_block_a_recompile(pkg_dir, data):
    m = json.loads((pkg_dir / "mesc.json").read_text())
    m["precisions"] = {"fp16": {"segments": {}}}
    (pkg_dir / "mesc.json").write_text(json.dumps(m))
    before = (pkg_dir / "mesc.json").read_bytes()
    with pytest.raises(MescError, match=r"would leave its prepared fp16 graphs running the mess policy"):
        write(pkg_dir, data, "fft")
    assert (pkg_dir / "mesc.json").read_bytes() == before
    write(pkg_dir, data, "mess")  # the kind the heads run: thresholds only, the prepared graphs stay valid
    assert json.loads((pkg_dir / "mesc.json").read_text())["precisions"] == {"fp16": {"segments": {}}}


def test_thresholds_a_kind_does_not_read_are_refused(pkg_dir, data):
    from mesc.package.describe import format_package

    write(pkg_dir, data, "fft")
    described = format_package(Package.load(pkg_dir))
    assert "  fft  " in described and "[0.0, 3.4028234663852886e+38]" in described  # the final exit takes all
    with mesc.load(pkg_dir) as pipe:
        first = pipe.exit_names[0]
        assert set(pipe.thresholds(first)) == {"lo", "hi"}
        with pytest.raises(MescError, match=f"exit '{first}' runs the fft policy, which reads lo and hi, not th_img"):
            pipe.set_thresholds(first, th_img=0.5)
        with pytest.raises(MescError, match="lo must not exceed hi"):
            pipe.set_thresholds(first, lo=2.0, hi=1.0)
        pipe.set_enabled(first, True)
        pipe.set_thresholds(first, lo=0.0, hi=1e9)  # every magnitude: all leave at the first exit
        assert {r.exit for r in pipe(images(data))} == {first}


def test_the_cli_takes_either_spelling_and_says_what_it_wrote(pkg_dir, data):
    res = CliRunner().invoke(cli, ["calibrate", str(pkg_dir), "--data", str(data), "--max-drop", "3",
                                   "--policy", "mean-entropy", "--write", "--th-img-steps", "4",
                                   "--warn-images", "0"])
    assert res.exit_code == 0, res.output
    assert f"written          mean_entropy policy and thresholds to {pkg_dir}/mesc.json" in res.output
    res = CliRunner().invoke(cli, ["calibrate", str(pkg_dir), "--data", str(data), "--max-drop", "3",
                                   "--policy", "median"])
    assert res.exit_code == 2 and "expected one of mess, mean_top1, mean_entropy, fft, learned" in res.output


def test_compare_policies_reports_every_kind_as_deployable(policy_package, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = calibrate(policy_package, data, max_drop=3, th_img_steps=4, warn_images=0, compare_policies=True)
    others = out.report["other_policies"]
    assert set(others) == {"mean_top1", "mean_entropy", "fft", "learned"}
    for r in others.values():
        assert r["deployable"] and r["unit"] == out.costs.unit
        assert r["expected_cost"] == r["chosen"]["expected_cost"] > 0
    assert out.report["compiled_policy"] == ["mess"]


def test_the_host_reference_scores_every_kind_but_the_learned_one():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    assert policy_scores(x, {"kind": "fft"}).shape == (2,)
    with pytest.raises(MescError, match="learned policy runs in the exit's graph only"):
        policy_scores(x, {"kind": "learned", "th_img": 0.5})
    np.testing.assert_array_equal(exit_decision([0.5, 1.5, 2.5], {"kind": "fft", "lo": 1.0, "hi": 2.0}),
                                  [False, True, False])
    np.testing.assert_array_equal(exit_decision([0.5, 0.7], {"th_pix": 0.9, "th_img": 0.6}), [False, True])


def test_a_native_resolution_package_with_tails_takes_every_kind(data, tmp_path):
    """With --policy-at native the policy reads the head's native logits and the labels come
    from the tail: the recompiled heads keep both; the learned kind can be written again."""
    from exported import export_toy

    pkg_dir = export_toy("skipnet", tmp_path / "native", 6, policy="top1", policy_at="native", dynamic_batch=True,
                         verify=False)
    for kind in ("learned", "learned", "mean_top1"):
        out = write(pkg_dir, data, kind)
        pkg = Package.load(pkg_dir)
        assert all(ex.tail and ex.labels for ex in pkg.exits)
        scores = learned_scores(out.memo, out.nets) if kind == "learned" else out.memo.conf(kind)[:, :, 0]
        with mesc.load(pkg_dir) as pipe:
            assert [r.exit for r in pipe(images(data))] == predicted_exits(pkg, scores)
