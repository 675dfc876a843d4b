"""TensorRT loader: engine selection, metadata checks and plan reading (pure, run everywhere
without TensorRT); the refusal of a CPU device."""

from types import SimpleNamespace

import pytest

import mesc
from mesc.package import sha256_file
from mesc.package.schema import Segment
from mesc.runtime import BackendError, DeviceError, EngineMismatchError
from mesc.runtime.backends.trt.loader import (EnginesFromPlans, PlansFromPackage, check_engine, choose_target,
                                              choose_variant, dla_core_of, engine_entries, read_plan,
                                              select_engines)
from mesc.runtime.devices import Device


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


def _pkg(manifest, root=".", segments=("chunk0", "head0")):
    return SimpleNamespace(manifest=manifest, root=root,
                           segments=[Segment(n, "chunk", f"onnx/{n}.onnx", (), ()) for n in segments])


GTX = {"trt_version": "8.6.1", "compute_capability": "6.1", "device": "NVIDIA GeForce GTX 1080 Ti"}


def test_select_engines_picks_the_build_for_this_gpu_and_collects_warnings():
    m = _manifest(gtx1080ti={"int8": _build("6.1", trt="8.6.1")}, xavier={"fp16": _build("7.2")})
    m["engines"]["gtx1080ti"]["int8"]["segments"]["head0"]["trt_version"] = "8.6.1"
    target, variant, entries, notes = select_engines(_pkg(m), None, None, GTX)
    assert (target, variant, set(entries)) == ("gtx1080ti", "int8", {"chunk0", "head0"}) and notes == []
    _, _, _, notes = select_engines(_pkg(m), None, None, dict(GTX, device="NVIDIA TITAN Xp"))
    assert len(notes) == 2 and all("tuned for the other GPU" in n for n in notes)
    with pytest.raises(EngineMismatchError, match="compute capability 7.2 .*is 6.1"):
        select_engines(_pkg(m), "xavier", None, GTX)
    with pytest.raises(BackendError, match=r"no engine for segments \['tail0'\]"):
        select_engines(_pkg(m, segments=("chunk0", "head0", "tail0")), "gtx1080ti", None, GTX)


def test_plans_are_read_against_their_checksums(tmp_path):
    plan = tmp_path / "engines" / "t" / "chunk0.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan bytes")
    rel = "engines/t/chunk0.plan"
    pkg = _pkg({"files": {rel: sha256_file(plan)}}, root=tmp_path)
    assert read_plan(pkg, "t", "chunk0", {"file": rel}) == b"plan bytes"
    plan.write_bytes(b"other bytes")
    with pytest.raises(BackendError, match="was altered"):
        read_plan(pkg, "t", "chunk0", {"file": rel})
    with pytest.raises(BackendError, match="of segment 'head0' is missing"):
        read_plan(pkg, "t", "head0", {"file": "engines/t/head0.plan"})
    with pytest.raises(BackendError, match="lists no plan file"):
        read_plan(pkg, "t", "head0", {})


def test_plans_for_the_cpu_are_refused_before_tensorrt_loads():
    with pytest.raises(DeviceError, match="CUDA devices only"):
        PlansFromPackage(_pkg(_manifest()), Device("cpu"))


def test_engine_io_is_checked_against_the_manifest():
    from mesc.runtime.backends.trt.loader import check_engine_io

    seg = Segment.from_dict({"name": "head0", "kind": "head", "file": "onnx/head0.onnx",
                             "inputs": [{"name": "feat", "dtype": "float32", "shape": ["batch", 8, 16, 32]}],
                             "outputs": [{"name": "exit0_labels", "dtype": "int32", "shape": ["batch", 32, 64]}]})
    # what compat.engine_io reads from an engine: TensorRT's dtype names, -1 for an open dimension
    io = [{"name": "feat", "mode": "input", "dtype": "float", "shape": [-1, 8, 16, 32]},
          {"name": "exit0_labels", "mode": "output", "dtype": "int32", "shape": [-1, 32, 64]}]
    check_engine_io(seg, io)
    io[1]["dtype"] = "int64"  # ArgMax left uncast
    with pytest.raises(EngineMismatchError, match="segment 'head0' output 'exit0_labels': manifest says dtype int32, "
                                                  "the engine gives int64; .*rebuild the engines"):
        check_engine_io(seg, io)
    io[1]["dtype"], io[0]["shape"] = "int32", [1, 8, 16, 32]  # built without the dynamic batch profile
    with pytest.raises(EngineMismatchError, match=r"input 'feat': manifest says dim 0 is dynamic \('batch'\), "
                                                  "the engine fixes it at 1"):
        check_engine_io(seg, io)
    io[0]["shape"], io[0]["mode"] = [-1, 8, 16, 32], "output"
    with pytest.raises(EngineMismatchError, match="input 'feat': the manifest lists it, the engine has no such input"):
        check_engine_io(seg, io)


def test_dla_core_of_a_build():
    m = _manifest(xavier={"fp16": _build("7.2"), "int8-dla1": _build("7.2")})
    assert dla_core_of("fp16", engine_entries(m, "xavier", "fp16")) is None
    assert dla_core_of("int8-dla1", engine_entries(m, "xavier", "int8-dla1")) == 1  # from the variant's name
    m["engines"]["xavier"]["int8-dla1"]["dla_core"] = 0  # what the builder recorded wins
    assert dla_core_of("int8-dla1", engine_entries(m, "xavier", "int8-dla1")) == 0
    m["engines"]["xavier"]["int8-dla1"]["segments"]["head0"]["dla_core"] = 1
    with pytest.raises(BackendError, match=r"several DLA cores \[0, 1\]"):
        dla_core_of("int8-dla1", engine_entries(m, "xavier", "int8-dla1"))
    # the deserialiser takes the core from the plans' loader unless told otherwise
    assert EnginesFromPlans(SimpleNamespace(dla_core=1)).dla_core == 1
    assert EnginesFromPlans(SimpleNamespace(dla_core=1), dla_core=0).dla_core == 0
    assert EnginesFromPlans({"chunk0": b""}).dla_core is None


def test_tensorrt_dtypes_map_to_numpy_without_trt_nptype():
    """By the DataType's name (what str() of TensorRT's enum gives): TensorRT 8.5's trt.nptype
    names np.bool, gone since numpy 1.24. make test-trt85 checks every member of the real enum."""
    import numpy as np

    from mesc.runtime.backends.trt.loader import numpy_dtype

    class DataType:  # str() as pybind11 enums give it
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return f"DataType.{self.name}"

    for name, want in [("FLOAT", np.float32), ("HALF", np.float16), ("INT8", np.int8), ("INT32", np.int32),
                       ("BOOL", np.bool_), ("UINT8", np.uint8), ("INT64", np.int64)]:
        assert numpy_dtype(DataType(name)) == np.dtype(want)
    with pytest.raises(BackendError, match="bf16 tensor, which numpy cannot hold"):
        numpy_dtype(DataType("BF16"))
