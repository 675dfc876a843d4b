"""ONNX Runtime loader on the CPU: which graph each segment runs, which segments load, the
session options; and the runner handed what it made."""

import onnx
import onnxruntime as ort
import pytest

from mesc.package import Package
from mesc.runtime import BackendError
from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage
from mesc.runtime.backends.onnxrt.loader import segment_graphs
from mesc.runtime.devices import Device

CPU = Device("cpu")


@pytest.fixture
def pkg(pkg_graph):
    return Package.load(pkg_graph)


def _marked_copy(pkg, segment, path):
    """The segment's own graph, tagged so that a session shows which file it came from."""
    model = onnx.load(str(pkg.path(next(s["file"] for s in pkg.segments if s["name"] == segment))))
    onnx.helper.set_model_props(model, {"mesc_test": "swapped"})
    onnx.save(model, str(path))
    return path


def test_segment_graphs_swap_files_and_keep_the_order(pkg):
    names = [s["name"] for s in pkg.segments]
    own = segment_graphs(pkg)
    assert list(own) == names and own[names[0]] == str(pkg.path(pkg.segments[0]["file"]))
    swapped = segment_graphs(pkg, files={names[1]: "/elsewhere/x.onnx"})
    assert swapped[names[1]] == "/elsewhere/x.onnx" and swapped[names[0]] == own[names[0]]
    assert list(segment_graphs(pkg, segments=[names[2], names[0]])) == [names[0], names[2]]


def test_swapped_graph_is_the_one_loaded(pkg, tmp_path):
    name = pkg.segments[1]["name"]
    sessions = SessionsFromPackage(pkg, CPU, files={name: _marked_copy(pkg, name, tmp_path / "x.onnx")})()
    meta = {n: s.get_modelmeta().custom_metadata_map for n, s in sessions.by_segment.items()}
    assert meta[name] == {"mesc_test": "swapped"}
    assert all("mesc_test" not in m for n, m in meta.items() if n != name)


def test_segment_subset_loads_only_those(pkg):
    first = pkg.segments[0]["name"]
    assert set(SessionsFromPackage(pkg, CPU, segments=[first])().by_segment) == {first}


def test_session_options(pkg):
    def level(**kw):
        sess = next(iter(SessionsFromPackage(pkg, CPU, **kw)().by_segment.values()))
        return sess.get_session_options()

    assert level().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert level(optimize=False).graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert level(threads=1).intra_op_num_threads == 1


def test_a_broken_graph_is_named(pkg, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    name = pkg.segments[0]["name"]
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
        assert set(runner.sessions) == {s["name"] for s in pkg.segments} and calls == [1]
    assert runner.sessions == {}
