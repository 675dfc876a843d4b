"""The typed view of a manifest (mesc.package.schema): what the JSON says, read-only, with the
defaults older packages rely on, and current after every write."""

import dataclasses
import json
import shutil

import pytest

from mesc.errors import MescError
from mesc.package import MANIFEST, Package
from mesc.package.schema import Exit, Input, Segment


@pytest.fixture
def pkg_dir(toy_package, tmp_path):
    shutil.copytree(toy_package, tmp_path / "pkg")
    return tmp_path / "pkg"


def test_the_view_says_what_the_json_says(pkg_dir):
    m = json.loads((pkg_dir / MANIFEST).read_text())
    pkg = Package.load(pkg_dir)
    assert isinstance(pkg.input, Input) and pkg.input.shape == tuple(m["input"]["shape"])
    assert all(isinstance(s, Segment) for s in pkg.segments) and all(isinstance(e, Exit) for e in pkg.exits)
    for seg, raw in zip(pkg.segments, m["segments"]):
        assert (seg.name, seg.kind, seg.file, seg.exit) == (raw["name"], raw["kind"], raw["file"], raw.get("exit"))
        assert [t.as_dict() for t in seg.inputs] == raw["inputs"]
        assert [t.as_dict() for t in seg.outputs] == raw["outputs"]
    for k, (ex, raw) in enumerate(zip(pkg.exits, m["exits"])):
        assert ex.position == k and ex.name == raw["name"] and ex.segment == raw["segment"]
        assert dict(ex.policy) == raw["policy"]
    assert pkg.exit("exit1") is pkg.exits[1] is pkg.exit(1)
    assert pkg.segment(pkg.exits[0].segment).kind == "head"
    assert dict(pkg.files) == m["files"]


def test_the_view_is_read_only_and_changes_go_through_the_package(pkg_dir):
    pkg = Package.load(pkg_dir)
    ex = pkg.exits[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.enabled = False
    with pytest.raises(TypeError):
        ex.policy["th_img"] = 0.1
    pkg.set_policy(0, th_img=0.25)
    assert pkg.exits[0].policy["th_img"] == 0.25 and ex.policy["th_img"] != 0.25  # a new view
    pkg.set_enabled(0, False)
    assert pkg.exits[0].enabled is False
    with pytest.raises(MescError, match="final exit"):
        pkg.set_enabled(len(pkg.exits) - 1, False)
    pkg.save()
    again = Package.load(pkg_dir)
    assert again.exits[0].policy["th_img"] == 0.25 and again.exits[0].enabled is False


def test_old_packages_get_the_defaults_once(pkg_dir):
    """Packages written before candidate heads and exit flags have no point, candidate or
    enabled: each exit is its own point, the first candidate, enabled."""
    m = json.loads((pkg_dir / MANIFEST).read_text())
    assert not any({"point", "candidate", "enabled"} & set(e) for e in m["exits"])
    pkg = Package.load(pkg_dir)
    assert [e.point for e in pkg.exits] == list(range(len(pkg.exits)))
    assert all(e.candidate == 0 and e.enabled for e in pkg.exits)
    assert not pkg.view.has_points and pkg.latency == {} and pkg.precisions == {} and pkg.engines == {}


def test_a_write_by_another_command_shows_in_the_view_after_save(pkg_dir):
    bench = Package.load(pkg_dir)
    bench.manifest.setdefault("latency", {})["onnxruntime/cpu"] = {s.name: 1.0 for s in bench.segments}
    bench.save()
    calib = Package.load(pkg_dir)
    rec = calib.latency["onnxruntime/cpu"]
    assert rec.covers(calib.segments) and rec.missing(calib.segments[:1]) == []
    assert bench.latency["onnxruntime/cpu"].ms == rec.ms  # the writer's own view followed its save
