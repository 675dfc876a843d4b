"""Overlays (`mesc run --overlay`) and the class names and colours a package stores
(`mesc export --class-names`)."""

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mesc.cli import cli
from mesc.runtime.overlay import (ALPHA, LEGEND_BG, LEGEND_MARGIN, blend, class_table, legend_lines, overlay,
                                  swatch_box)

NAMES = ["floor", "person", "box", "robot"]
SIZE = (96, 192)


@pytest.fixture(scope="module")
def named_pkg(tmp_path_factory):
    pytest.importorskip("torch")
    from toys import three_exits

    from mesc.exporters.export import ExportOptions, export

    d = tmp_path_factory.mktemp("named")
    (d / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return export(three_exits(), d / "pkg", options=ExportOptions(
        input_shape=(1, 3, *SIZE), strides=[2, 4, 4], policy=None, verify=False,
        class_names=str(d / "classes.txt"))).root


def test_export_stores_names_and_fixed_colours(named_pkg):
    from mesc.package import Package
    from mesc.runtime.images import palette

    pkg = Package.load(named_pkg)
    assert [c.name for c in pkg.view.classes] == NAMES
    flat = palette(4)
    assert [list(c.color) for c in pkg.view.classes] == [flat[3 * i:3 * i + 3] for i in range(4)]
    assert class_table(pkg) == (NAMES, [tuple(flat[3 * i:3 * i + 3]) for i in range(4)])


def test_export_refuses_a_classes_file_of_another_count(tmp_path):
    pytest.importorskip("torch")
    from toys import three_exits

    from mesc.errors import MescError
    from mesc.exporters.export import ExportOptions, export

    f = tmp_path / "classes.txt"
    f.write_text("a\nb\n")
    with pytest.raises(MescError, match="names 2 classes but the model's exits have 4"):
        export(three_exits(), tmp_path / "pkg", options=ExportOptions(verify=False, class_names=str(f)))
    f.write_text("\n\n")
    with pytest.raises(MescError, match="names no class"):
        export(three_exits(), tmp_path / "pkg", options=ExportOptions(verify=False, class_names=str(f)))


def test_manifest_classes_are_validated(named_pkg):
    from mesc.errors import PackageError
    from mesc.package.manifest import validate_manifest

    m = json.loads((named_pkg / "mesc.json").read_text())
    validate_manifest(m)
    for bad, msg in ((lambda c: c.pop(), "expected a list of 4 entries"),
                     (lambda c: c[1].update(color=[0, 300, 0]), r"classes\[1\]: color must be \[r, g, b\]"),
                     (lambda c: c[2].update(name=""), r"classes\[2\]: name must be a non-empty string")):
        m2 = copy.deepcopy(m)
        bad(m2["classes"])
        with pytest.raises(PackageError, match=msg):
            validate_manifest(m2)


def test_old_packages_show_class_numbers(pkg_host):
    from mesc.package import Package

    names, colours = class_table(Package.load(pkg_host))
    assert names == ["0", "1", "2", "3"] and colours[0] == (128, 64, 128)
    rows, header = legend_lines(np.array([[2, 2, 1]]), names, "exit1", 3.25)
    assert rows == [(2, "2"), (1, "1")] and header == "exit1 3.2 ms"


def test_blend_and_legend_pixels():
    img = np.full((60, 120, 3), 100, np.uint8)
    labels = np.zeros((60, 120), np.int32)
    labels[:, 60:] = 1
    colours = [(200, 0, 0), (0, 200, 0)]
    out = overlay(img, labels, ["a", "b"], colours, "exit0", 1.0)
    # away from the legend: the blend, exactly
    assert tuple(out[50, 10]) == (150, 50, 50) and tuple(out[50, 110]) == (50, 150, 50)
    assert np.array_equal(blend(img, labels, colours), np.where(labels[..., None] == 0, [150, 50, 50], [50, 150, 50]))
    # the legend's box and its swatches, most frequent class first (a tie: lower id first)
    assert tuple(out[LEGEND_MARGIN, LEGEND_MARGIN]) == LEGEND_BG
    for row, c in enumerate((0, 1)):
        x0, y0, x1, y1 = swatch_box(row)
        assert (out[y0:y1 + 1, x0:x1 + 1] == colours[c]).all()


def test_run_overlay_on_images(named_pkg, tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "imgs"
    src.mkdir()
    img = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    Image.fromarray(img).save(src / "a.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(named_pkg), str(src), "-o", str(out), "--overlay", "--th-pix", "0.5"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["a.overlay.png", "a.png", "results.csv", "results.json"]
    labels = np.asarray(Image.open(out / "a.png"))
    ov = np.asarray(Image.open(out / "a.overlay.png").convert("RGB"))
    data = json.loads((out / "results.json").read_text())
    row = data["images"][0]
    assert row["overlay"] == "a.overlay.png"
    colours = [tuple(c["color"]) for c in json.loads((named_pkg / "mesc.json").read_text())["classes"]]
    # the label PNG's palette is the package's colours
    assert Image.open(out / "a.png").getpalette()[:12] == [v for c in colours for v in c]
    # the legend's first swatch shows the most frequent class's colour
    top = int(np.bincount(labels.reshape(-1)).argmax())
    x0, y0, x1, y1 = swatch_box(0)
    assert (ov[y0:y1 + 1, x0:x1 + 1] == colours[top]).all()
    # the bottom-right corner, far from the legend: image and class colour blended
    y, x = SIZE[0] - 1, SIZE[1] - 1
    want = np.floor((1 - ALPHA) * img[y, x] + ALPHA * np.array(colours[labels[y, x]]) + 0.5)
    assert np.array_equal(ov[y, x], want)
    # --force replaces the run, overlay included (the overlay is recognised as mesc's own)
    res = CliRunner().invoke(cli, ["run", str(named_pkg), str(src), "-o", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert not (out / "a.overlay.png").exists()


def test_inspect_shows_the_classes(named_pkg, pkg_host):
    from mesc.package import Package
    from mesc.package.describe import format_package

    assert "classes   0 floor #804080, 1 person #f423e8, 2 box #464646, 3 robot #66669c" in \
        format_package(Package.load(named_pkg))
    assert "classes   unnamed" in format_package(Package.load(pkg_host))
