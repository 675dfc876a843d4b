"""mesc's own side of `mesc build` without TensorRT: the staging directory an interrupted build
leaves nothing of, and the manifest entry a finished one writes.

NOT a fake TensorRT: only ``compat.build_engine`` (the one call into TensorRT) is replaced, by a
function that writes a plan file into the staging directory as the real one does; every line of
mesc around it (staging, install, manifest merge and validation) runs as on the device.
"""

import json
import os
import shutil

import pytest

from mesc.engines.build import build_engines, timing_cache_name
from mesc.engines.targets import plan_build
from mesc.targets import get_target
from mesc.package import Package

FACTS = {"trt_version": "10.3.0", "device": "test GPU", "compute_capability": "8.6"}


@pytest.fixture
def pkg(toy_package, tmp_path):
    return Package.load(shutil.copytree(toy_package, tmp_path / "pkg"))


def _plan():
    return plan_build(get_target("host"), "fp32", FACTS["trt_version"], None, FACTS["compute_capability"])


def _sources(pkg):
    return {s.name: s.file for s in pkg.segments}


def _writes_plan(then=None):
    def build_engine(onnx_path, plan, engine_path, calib_feeds=None, calib_cache=None, timing_cache=None, shapes=None):
        engine_path.write_bytes(b"plan")
        if then is not None:
            raise then
        return {"io": [], "layers": {}}

    return build_engine


def test_an_interrupted_build_leaves_no_staging_directory(pkg, monkeypatch):
    from mesc.runtime.backends.trt import compat

    monkeypatch.setattr(compat, "build_engine", _writes_plan(then=KeyboardInterrupt()))
    before = (pkg.root / "mesc.json").read_text()
    with pytest.raises(KeyboardInterrupt):
        build_engines(pkg, _plan(), FACTS, _sources(pkg))
    assert os.listdir(pkg.root / "engines") == []  # no .host-fp32.tmp-*
    assert (pkg.root / "mesc.json").read_text() == before


def test_a_finished_build_is_installed_with_its_timing_cache_named(pkg, monkeypatch, tmp_path):
    from mesc.runtime.backends.trt import compat

    monkeypatch.setattr(compat, "build_engine", _writes_plan())
    entry = build_engines(pkg, _plan(), FACTS, _sources(pkg))
    assert entry["timing_cache"] == f"engines/{timing_cache_name('host', FACTS)}"  # inside the package: relative
    loaded = Package.load(pkg.root)
    assert loaded.manifest["engines"]["host"]["fp32"]["dir"] == "engines/host-fp32"
    assert sorted(os.listdir(pkg.root / "engines" / "host-fp32"))[0].endswith(".json")

    outside = tmp_path / "caches" / "shared.cache"
    entry = build_engines(loaded, _plan(), FACTS, _sources(loaded), timing_cache=outside)
    assert entry["timing_cache"] == str(outside.resolve())  # the user's own file, kept as given
    manifest = json.loads((pkg.root / "mesc.json").read_text())
    assert manifest["engines"]["host"]["fp32"]["timing_cache"] == str(outside.resolve())
    Package.load(pkg.root)  # an external timing cache is no package path: still valid
