"""`calibrate()` and `mesc calibrate`: options checked before any work, too few or unlabelled
images refused, a degenerate choice said out loud, and a write refused when the latencies its
costs came from changed meanwhile."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mesc.calibration.exits import calibrate, format_report
from mesc.calibration.exits.calibration import CalibrationWarning, check_options
from mesc.cli import cli
from mesc.errors import CalibrationError, PackageError


@pytest.fixture(scope="module")
def toy(policy_package, tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return policy_package, generate(tmp_path_factory.mktemp("data") / "data", 8, seed=3, size=(32, 64))


@pytest.fixture
def pkg_dir(toy, tmp_path):
    return shutil.copytree(toy[0], tmp_path / "pkg")


@pytest.mark.parametrize("options,message", [
    ({}, "exactly one bound"),
    ({"max_drop": 1, "max_cost": "50%"}, "exactly one bound"),
    ({"max_drop": float("nan")}, "--max-drop must be a finite number >= 0"),
    ({"max_drop": -1}, "--max-drop must be a finite number >= 0"),
    ({"max_cost": "0%"}, "--max-cost must be a positive number or N% with N > 0"),
    ({"max_cost": float("inf")}, "--max-cost must be a positive number"),
    ({"max_cost": "-3"}, "--max-cost must be a positive number"),
    ({"max_cost": "fast"}, "expected a number or a percentage"),
    ({"max_drop": 1, "limit": 0}, "--limit must be an integer of at least 1, got 0"),
    ({"max_drop": 1, "th_img_steps": 1}, "--th-img-steps must be an integer of at least 2"),
    ({"max_drop": 1, "min_images": 0}, "--min-images must be"),
])
def test_options_are_refused_before_anything_is_read(options, message):
    with pytest.raises(CalibrationError, match=message):
        check_options(**options)
    with pytest.raises(CalibrationError, match=message):  # not "no such package": nothing was read
        calibrate("no/such/package", "no/such/data", **options)


def test_too_few_images_refused_and_few_warned(toy):
    pkg, data = toy
    with pytest.raises(CalibrationError, match=r"needs at least 5 labelled images \(--min-images\), got 3"):
        calibrate(pkg, data, max_drop=1, limit=3)
    with pytest.warns(CalibrationWarning, match=r"^thresholds chosen on 8 images will overfit; use at least 50$"):
        calibrate(pkg, data, max_drop=1, th_img_steps=4)
    with pytest.warns(CalibrationWarning, match="chosen on 3 images"):
        calibrate(pkg, data, max_drop=1, limit=3, min_images=3, th_img_steps=4)


def test_the_cli_warns_in_one_line(toy):
    pkg, data = toy
    res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(data), "--max-drop", "1",
                                   "--th-img-steps", "4", "--warn-images", "10"])
    assert res.exit_code == 0, res.output
    assert "mesc: warning: thresholds chosen on 8 images will overfit; use at least 10\n" in res.stderr
    assert "CalibrationWarning" not in res.stderr and "warnings.warn" not in res.stderr
    res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(data), "--max-drop", "1",
                                   "--min-images", "9"])
    assert res.exit_code == 2 and res.output.startswith("mesc: error: calibrate needs at least 9")


def _copy_with_masks(data, dest, unlabelled):
    shutil.copytree(data, dest)
    masks = sorted((dest / "masks").glob("*.png"))
    for m in masks[:unlabelled]:
        Image.fromarray(np.full((32, 64), 255, np.uint8)).save(m)
    return dest


def test_unlabelled_masks_are_refused(toy, tmp_path):
    pkg, data = toy
    none = _copy_with_masks(data, tmp_path / "none", 8)
    with pytest.raises(CalibrationError, match="no mask in .* has a labelled pixel"):
        calibrate(pkg, none, max_drop=1, warn_images=0)
    some = _copy_with_masks(data, tmp_path / "some", 2)
    with pytest.raises(CalibrationError, match=r"2 of 8 masks .* no labelled pixel .*00000\.png, 00001\.png"):
        calibrate(pkg, some, max_drop=1, warn_images=0)


def test_a_choice_that_sends_every_image_out_early_is_said(toy, pkg_dir):
    _, data = toy
    with pytest.warns(CalibrationWarning):
        out = calibrate(pkg_dir, data, max_drop=100, th_img_steps=4, warn_images=0, write=True)
    first = out.report["chosen"]["exits"][0]
    assert out.report["takes_all"] == first and out.report["chosen"]["exit_fraction"][first] == 1.0
    assert f"note             {first} takes every image that reaches it" in format_report(out.report)


def test_write_refused_when_the_latency_it_used_changed(toy, pkg_dir):
    from mesc.calibration.exits.manifest import write_configuration
    from mesc.calibration.exits.search import Searcher, costs_from_package
    from mesc.package import Package

    first = Package.load(pkg_dir)
    first.manifest["latency"] = {"onnxruntime/cpu": {s.name: 1.0 for s in first.segments}}
    first.save()

    ours = Package.load(pkg_dir)  # calibrate's view
    costs = costs_from_package(ours)
    assert costs.manifest_dependencies() == [("latency", "onnxruntime/cpu")]
    from mesc.calibration.exits.memo import evaluate

    memo = evaluate(ours, toy[1])
    cfg = Searcher(memo.inter, memo.union, memo.conf(), costs, exit_names=memo.exits,
                   th_pix_grid=memo.th_pix_grid, th_img_steps=4).search(max_drop=1).best

    bench = Package.load(pkg_dir)  # a `mesc bench --record` meanwhile
    bench.manifest["latency"]["onnxruntime/cpu"] = {s.name: 2.0 for s in bench.segments}
    bench.save()
    with pytest.raises(PackageError, match=r"latency\.onnxruntime/cpu was changed by another command"):
        write_configuration(ours, cfg, depends_on=costs.manifest_dependencies())

    ours = Package.load(pkg_dir)
    other = Package.load(pkg_dir)  # a latency under another key does not matter
    other.manifest["latency"]["onnxruntime/cuda:0"] = {s.name: 0.5 for s in other.segments}
    other.save()
    write_configuration(ours, cfg, depends_on=costs_from_package(ours).manifest_dependencies())
    assert Package.load(pkg_dir).manifest["calibration"]["exits"] == cfg.exits


def test_flop_costs_depend_on_no_latency_being_recorded(toy):
    from mesc.calibration.exits.search import costs_from_package
    from mesc.package import Package

    assert costs_from_package(Package.load(toy[0])).manifest_dependencies() == [("latency",)]


def test_the_report_names_the_split_and_where_the_exits_ran(toy, tmp_path):
    pkg, data = toy
    shutil.copytree(data, tmp_path / "sets" / "val")
    out = calibrate(pkg, tmp_path / "sets", split="val", max_drop=1, th_img_steps=4, warn_images=0)
    assert (out.report["split"], out.report["backend"], out.report["device"]) == ("val", "onnxruntime", "cpu")
    assert out.report["images"] == 8
