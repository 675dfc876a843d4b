"""ONNX Runtime loader on the CPU: which graph each segment runs, which segments load, the
session options, the check of each graph's I/O against the manifest; and the runner handed
what it made."""

import json
import shutil

import onnx
import onnxruntime as ort
import pytest

import mesc
from mesc.errors import PackageError
from mesc.package import Package
from mesc.runtime import BackendError
from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage
from mesc.runtime.backends.onnxrt import loader
from mesc.runtime.backends.onnxrt.loader import segment_graphs
from mesc.runtime.devices import Device

CPU = Device("cpu")


@pytest.fixture
def pkg(pkg_graph):
    return Package.load(pkg_graph)


def _marked_copy(pkg, segment, path):
    """The segment's own graph, tagged so that a session shows which file it came from."""
    model = onnx.load(str(pkg.path(next(s.file for s in pkg.segments if s.name == segment))))
    onnx.helper.set_model_props(model, {"mesc_test": "swapped"})
    onnx.save(model, str(path))
    return path


def test_segment_graphs_swap_files_and_keep_the_order(pkg):
    names = [s.name for s in pkg.segments]
    own = segment_graphs(pkg)
    assert list(own) == names and own[names[0]] == str(pkg.path(pkg.segments[0].file))
    swapped = segment_graphs(pkg, files={names[1]: "/elsewhere/x.onnx"})
    assert swapped[names[1]] == "/elsewhere/x.onnx" and swapped[names[0]] == own[names[0]]
    assert list(segment_graphs(pkg, segments=[names[2], names[0]])) == [names[0], names[2]]


def test_swapped_graph_is_the_one_loaded(pkg, tmp_path):
    name = pkg.segments[1].name
    sessions = SessionsFromPackage(pkg, CPU, files={name: _marked_copy(pkg, name, tmp_path / "x.onnx")})()
    meta = {n: s.get_modelmeta().custom_metadata_map for n, s in sessions.by_segment.items()}
    assert meta[name] == {"mesc_test": "swapped"}
    assert all("mesc_test" not in m for n, m in meta.items() if n != name)


def test_segment_subset_loads_only_those(pkg):
    first = pkg.segments[0].name
    assert set(SessionsFromPackage(pkg, CPU, segments=[first])().by_segment) == {first}


def test_session_options(pkg):
    def level(**kw):
        sess = next(iter(SessionsFromPackage(pkg, CPU, **kw)().by_segment.values()))
        return sess.get_session_options()

    assert level().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert level(optimize=False).graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert level(threads=1).intra_op_num_threads == 1


@pytest.mark.parametrize("spin, allow, stop", [(None, "1", "1"), ("run", "1", "1"), ("off", "0", None),
                                               (False, "0", None), ("on", "1", None), (True, "1", None)])
def test_threads_spin_only_while_a_segment_runs_by_default(pkg, spin, allow, stop):
    # a chain's sessions run one after another: threads still spinning after their run would take
    # the cores from the next segment's (mesc bench --spin on), sleeping ones make every parallel
    # operator wait for a wake-up (--spin off)
    kw = {} if spin is None else {"spin": spin}
    for sess in SessionsFromPackage(pkg, CPU, threads=2, **kw)().by_segment.values():
        so = sess.get_session_options()
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == allow
        assert so.get_session_config_entry("session.inter_op.allow_spinning") == allow
        if stop is None:
            with pytest.raises(Exception):
                so.get_session_config_entry("session.force_spinning_stop")
        else:
            assert so.get_session_config_entry("session.force_spinning_stop") == stop


def test_an_unknown_spin_mode_is_refused(pkg):
    with pytest.raises(BackendError, match="spin must be one of run, off, on \\(or True/False\\), got 'fast'"):
        SessionsFromPackage(pkg, CPU, spin="fast")


@pytest.mark.parametrize("version, mem_pattern", [((1, 16, 0), False), ((1, 18, 1), False), ((1, 19, 0), True),
                                                  ((1, 32, 0), True)])
def test_the_memory_pattern_is_off_before_onnxruntime_1_19(monkeypatch, version, mem_pattern):
    # 1.16-1.18 gave wrong, run-to-run different results on dynamic-size graphs with it on
    # (tests/exporters/policy/test_mess_graph.py shows it on the oldest release installed)
    monkeypatch.setattr(loader, "ort_version", lambda: version)
    assert loader.session_options().enable_mem_pattern is mem_pattern


def test_a_broken_graph_is_named(pkg, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    name = pkg.segments[0].name
    with pytest.raises(BackendError, match=f"onnxruntime cannot load {name}"):
        SessionsFromPackage(pkg, CPU, files={name: bad})()


def test_runner_calls_its_loader_on_activate_only(pkg):
    calls = []
    loader = SessionsFromPackage(pkg, CPU)

    def counted():
        calls.append(1)
        return loader()

    runner = OrtRunner(counted, CPU)
    assert calls == []
    with runner:
        assert set(runner.sessions) == {s.name for s in pkg.segments} and calls == [1]
    assert runner.sessions == {}


def _edited_copy(pkg, tmp_path, edit):
    """A copy of the package whose manifest ``edit(manifest)`` changed (the manifest itself
    carries no checksum; the graphs stay as exported)."""
    root = tmp_path / "edited"
    shutil.copytree(pkg.root, root)
    manifest = json.loads((root / "mesc.json").read_text())
    edit(manifest)
    (root / "mesc.json").write_text(json.dumps(manifest))
    return root


def _tensor(manifest, segment, role, index):
    return next(s for s in manifest["segments"] if s["name"] == segment)[role][index]


def _everywhere(manifest, tensor, **change):
    """Change ``tensor`` wherever the manifest lists it, so the manifest stays consistent
    (its own validation passes) and only the graphs disagree with it."""
    for seg in manifest["segments"]:
        for spec in seg["inputs"] + seg["outputs"]:
            if spec["name"] == tensor:
                spec.update(change)


def _rename(manifest, old, new):
    _everywhere(manifest, old, name=new)


@pytest.mark.parametrize("edit, message", [
    (lambda m: _tensor(m, "head0", "outputs", 1).update(dtype="int64"),
     "segment 'head0' output 'exit0_labels': manifest says dtype int64, the graph gives int32"),
    (lambda m: _everywhere(m, _tensor(m, "chunk0", "outputs", 0)["name"], shape=["batch", 8, 16, 64]),
     r"segment 'chunk0' output '(\w+)': manifest says shape \['batch', 8, 16, 64\], the graph gives "
     r"\[None, 8, 16, 32\] \(dim 3\)"),
    (lambda m: _rename(m, _tensor(m, "chunk0", "outputs", 0)["name"], "renamed"),
     r"segment 'chunk0' output 'renamed': the manifest lists it, the graph has no such output"),
    (lambda m: m["segments"][0]["inputs"][0]["shape"].__setitem__(0, 1),
     None),  # a graph open where the manifest fixes the batch accepts it: no error
])
def test_a_graph_unlike_its_manifest_entry_is_refused_at_load(pkg, tmp_path, edit, message):
    root = _edited_copy(pkg, tmp_path, edit)
    if message is None:
        mesc.load(root).close()
        return
    with pytest.raises(PackageError, match=message) as err:
        mesc.load(root)
    text = str(err.value)
    assert "\n" not in text and f"package {root}" in text and "onnx/" in text
