"""TensorRT runner on a GPU with TensorRT (marked trt, skipped elsewhere): engines built with
polygraphy, run against ONNX Runtime; a plan for another GPU refused at load."""

import shutil

import numpy as np
import pytest

import mesc
from mesc.runtime import EngineMismatchError
from runtime_checks import assert_same_decisions


def _build_engines(pkg_dir, out_dir):
    """Plans for every segment with polygraphy on this GPU, recorded in a copy of the package."""
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile, SaveEngine

    from mesc.package import Package, sha256_file
    from mesc.runtime import devices

    shutil.copytree(pkg_dir, out_dir)
    pkg = Package.load(out_dir)
    cc = devices.compute_capability(0)
    segs = {}
    (out_dir / "engines" / "host" / "fp32").mkdir(parents=True)
    for seg in pkg.segments:
        profile = Profile()
        for t in seg.inputs:
            shape = [d if isinstance(d, int) else None for d in t.shape]
            if None in shape:
                lo, hi = ([1 if d is None else d for d in shape], [8 if d is None else d for d in shape])
                profile.add(t.name, min=lo, opt=hi, max=hi)
        rel = f"engines/host/fp32/{seg.name}.plan"
        SaveEngine(EngineFromNetwork(NetworkFromOnnxPath(str(pkg.path(seg.file))),
                                     CreateConfig(profiles=[profile])), str(out_dir / rel))()
        pkg.manifest["files"][rel] = sha256_file(out_dir / rel)
        segs[seg.name] = {"file": rel}
    pkg.manifest["engines"] = {"host": {"fp32": {
        "dir": "engines/host/fp32", "trt_version": trt.__version__, "device": devices.device_name(0),
        "compute_capability": cc, "precision": "fp32", "segments": segs}}}
    pkg.save()
    return out_dir


@pytest.mark.trt
def test_trt_runner_matches_onnxruntime(pkg_graph, images, tmp_path):
    pkg = _build_engines(pkg_graph, tmp_path / "pkg")
    with mesc.load(pkg, backend="onnxruntime") as ref, mesc.load(pkg, backend="tensorrt", device="cuda:0") as trt_:
        assert trt_.runner.backend == "tensorrt"
        assert_same_decisions(ref, trt_, images)
        steps = list(trt_.anytime(images[:2]))
        assert [s[0].exit for s in steps] == ["exit0", "exit1", "exit2"]
        budget = trt_(images, exit=1)
        np.testing.assert_array_equal(np.stack([r.labels for r in budget]),
                                      np.stack([r.labels for r in ref(images, exit=1)]))


@pytest.mark.trt
def test_trt_refuses_a_plan_for_another_gpu(pkg_graph, tmp_path):
    from mesc.package import Package

    pkg = Package.load(_build_engines(pkg_graph, tmp_path / "pkg"))
    pkg.manifest["engines"]["host"]["fp32"]["compute_capability"] = "1.0"
    pkg.save()
    with pytest.raises(EngineMismatchError, match="compute capability 1.0"):
        mesc.load(pkg.root, backend="tensorrt", device="cuda:0")


@pytest.mark.trt
def test_trt_cuda_graphs_on_and_off_agree(pkg_graph, images, tmp_path):
    pkg = _build_engines(pkg_graph, tmp_path / "pkg")
    with mesc.load(pkg, backend="onnxruntime") as ref, \
            mesc.load(pkg, backend="tensorrt", device="cuda:0") as graphs, \
            mesc.load(pkg, backend="tensorrt", device="cuda:0", cuda_graphs=False) as plain:
        for _ in range(3):  # uncaptured, captured, replayed
            assert_same_decisions(ref, graphs, images)
            assert_same_decisions(ref, plain, images)
        assert graphs.runner.path()["cuda_graphs"] == "cuda-graphs" and not graphs.runner.graph_fallbacks
