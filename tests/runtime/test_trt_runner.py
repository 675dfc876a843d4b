"""TensorRT runner: engine selection and refusals (pure, run everywhere); the runner itself
on a GPU with TensorRT (marked trt, skipped elsewhere); ORT CUDA (marked gpu)."""

import shutil

import numpy as np
import pytest

import mesc
from mesc.runtime import BackendError, EngineMismatchError
from mesc.runtime.runners.trt import check_engine, choose_target, choose_variant, engine_entries


def _manifest(**targets):
    return {"files": {}, "engines": targets}


def _build(cc="6.1", trt="8.6.1", device="NVIDIA GeForce GTX 1080 Ti"):
    return {"dir": "engines/t/int8", "trt_version": trt, "device": device, "compute_capability": cc,
            "plan": {"strongly_typed": False},
            "segments": {"chunk0": {"file": "engines/t/int8/chunk0.plan", "placement": {}},
                         "head0": {"file": "head0.plan", "trt_version": "8.6.2"}}}


def test_engine_entries_merge_build_metadata_and_resolve_paths():
    m = _manifest(gtx1080ti={"int8": _build()})
    e = engine_entries(m, "gtx1080ti", "int8")
    assert e["chunk0"]["file"] == "engines/t/int8/chunk0.plan"
    assert e["head0"]["file"] == "engines/t/int8/head0.plan"  # relative to the build's dir
    assert e["chunk0"]["compute_capability"] == "6.1" and e["head0"]["trt_version"] == "8.6.2"
    assert "plan" not in e["chunk0"] or not isinstance(e["chunk0"]["plan"], dict)


def test_target_and_precision_choice():
    m = _manifest(gtx1080ti={"int8": _build("6.1")}, xavier={"fp16": _build("7.2"), "int8-dla0": _build("7.2")})
    assert choose_target(m, None, "6.1") == "gtx1080ti"
    assert choose_target(m, "xavier", None) == "xavier"
    with pytest.raises(BackendError, match=r"several targets \['gtx1080ti', 'xavier'\].*sm_86"):
        choose_target(m, None, "8.6")
    with pytest.raises(BackendError, match="no engines for target 'orin'"):
        choose_target(m, "orin", "8.7")
    with pytest.raises(BackendError, match="no TensorRT engines"):
        choose_target(_manifest(), None, "8.6")
    assert choose_variant(m, "gtx1080ti", None) == "int8"
    with pytest.raises(BackendError, match=r"several precisions \['fp16', 'int8-dla0'\]"):
        choose_variant(m, "xavier", None)
    with pytest.raises(BackendError, match="has no 'fp32' engines"):
        choose_variant(m, "xavier", "fp32")
    single = _manifest(host=_build("8.6"))  # a target holding its segments directly
    assert choose_variant(single, "host", None) == ""
    assert engine_entries(single, "host", "")["chunk0"]["compute_capability"] == "8.6"


def test_plans_for_another_device_or_version_are_refused():
    meta = {"file": "engines/x/chunk0.plan", "trt_version": "8.6.1", "compute_capability": "6.1",
            "device": "NVIDIA GeForce GTX 1080 Ti"}
    assert check_engine("chunk0", meta, "8.6.1.6", "6.1", "NVIDIA GeForce GTX 1080 Ti") == []
    with pytest.raises(EngineMismatchError, match="built with TensorRT 8.6.1, this machine has 10.3.0"):
        check_engine("chunk0", meta, "10.3.0", "6.1", None)
    with pytest.raises(EngineMismatchError, match="compute capability 6.1 .*is 7.2: rebuild"):
        check_engine("chunk0", meta, "8.6.1", "7.2", "Xavier")
    with pytest.raises(EngineMismatchError, match="no trt_version"):
        check_engine("chunk0", {"file": "x"}, "8.6.1", "6.1", None)
    notes = check_engine("chunk0", meta, "8.6.1", "6.1", "NVIDIA TITAN Xp")
    assert len(notes) == 1 and "tuned for the other GPU" in notes[0]


def test_tensorrt_on_cpu_is_refused(pkg_host):
    pytest.importorskip("tensorrt", reason="without TensorRT the missing extra is reported first")
    with pytest.raises(mesc.errors.MescError, match="CUDA devices only"):
        mesc.load(pkg_host, backend="tensorrt", device="cpu")


def _has_ort_cuda():
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_ort_cuda(), reason="onnxruntime has no CUDA provider here (pip install 'mesc[gpu]')")
def test_ort_cuda_iobinding_matches_cpu(pkg_graph, images):
    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu:
        for k in range(3):
            for p in (cpu, gpu):
                p.set_thresholds(k, th_pix=0.5, th_img=0.5)
        a, b = cpu(images), gpu(images)
    assert [r.exit for r in a] == [r.exit for r in b]
    for ra, rb in zip(a, b):
        assert (ra.labels == rb.labels).mean() > 0.999


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
        for t in seg["inputs"]:
            shape = [d if isinstance(d, int) else None for d in t["shape"]]
            if None in shape:
                lo, hi = ([1 if d is None else d for d in shape], [8 if d is None else d for d in shape])
                profile.add(t["name"], min=lo, opt=hi, max=hi)
        rel = f"engines/host/fp32/{seg['name']}.plan"
        SaveEngine(EngineFromNetwork(NetworkFromOnnxPath(str(pkg.path(seg["file"]))),
                                     CreateConfig(profiles=[profile])), str(out_dir / rel))()
        pkg.manifest["files"][rel] = sha256_file(out_dir / rel)
        segs[seg["name"]] = {"file": rel}
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
        for k in range(3):
            for p in (ref, trt_):
                p.set_thresholds(k, th_pix=0.5, th_img=0.5)
        a, b = ref(images), trt_(images)
        assert [r.exit for r in a] == [r.exit for r in b]
        for ra, rb in zip(a, b):
            assert (ra.labels == rb.labels).mean() > 0.999
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
