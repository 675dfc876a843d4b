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
    def build_engine(onnx_path, plan, engine_path, calib_feeds=None, calib_cache=None, timing_cache=None, shapes=None,
                     policy=None):
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


def test_the_entry_builds_fp32_on_the_gpu_whatever_the_builds_precision(pkg, monkeypatch):
    """An FP16 or INT8 flag would let TensorRT divide in lower precision, and the entry must round
    as the host's normalisation does; uint8 I/O is a GPU feature. The other segments get the plan."""
    from mesc.runtime.backends.trt import compat

    plans = {}

    def build_engine(onnx_path, plan, engine_path, *a, **k):
        plans[engine_path.stem] = plan
        return _writes_plan()(onnx_path, plan, engine_path, *a, **k)

    monkeypatch.setattr(compat, "build_engine", build_engine)
    fp16 = plan_build(get_target("orin"), "fp16", "8.6.2", 0, "8.7")
    assert fp16.fp16_flag and fp16.dla_core == 0 and pkg.entry is not None
    entry = build_engines(pkg, fp16, dict(FACTS, trt_version="8.6.2", compute_capability="8.7"), _sources(pkg))
    e = plans["entry"]
    assert (e.precision, e.fp16_flag, e.int8_flag, e.implicit_int8, e.dla_core, e.gpu_fallback) == \
        ("fp32", False, False, False, None, False)
    assert all(plans[s.name] == fp16 for s in pkg.segments if s.kind != "entry")
    meta = json.loads((pkg.root / entry["dir"] / "entry.json").read_text())
    assert meta["precision"] == "fp32" and meta["plan"]["dla_core"] is None
