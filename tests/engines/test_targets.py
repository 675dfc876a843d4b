"""Targets, refusals and build plans (pure logic), ORT TensorRT EP options, engine bookkeeping."""

import pytest
from onnx import TensorProto, helper

from mesc.engines.build import source_graphs, summarize_layers
from mesc.engines.targets import check_onnx_ops, plan_build
from mesc.targets import Target, check_build_request, get_target, register_target
from mesc.errors import MescError
from mesc.package.schema import Precision, Segment


def test_unknown_target_lists_known_ones():
    with pytest.raises(MescError, match="known targets: gtx1080ti, host, orin, xavier"):
        get_target("tx2")


def test_register_target_refuses_shadowing_and_bad_precisions():
    t = Target("nano_test", ("5.3",), trt_min="8.2", trt_max="8.3", precisions=("fp32", "fp16"))
    try:
        assert register_target(t) is get_target("nano_test")
        with pytest.raises(MescError, match="already registered"):
            register_target(t)
        register_target(t, replace=True)
    finally:
        from mesc import targets

        targets._TARGETS.pop("nano_test", None)
    with pytest.raises(MescError, match="unknown precisions"):
        register_target(Target("bf_test", None, precisions=("bf16",)))


def test_pascal_refuses_fp16_unless_allowed():
    with pytest.raises(MescError, match="no fast FP16.*--precision int8.*--allow-slow"):
        check_build_request("gtx1080ti", "fp16", "8.6.1", compute_capability="6.1")
    plan = plan_build("gtx1080ti", "fp16", "8.6.1", compute_capability="6.1", allow_slow=True)
    assert plan.fp16_flag and any("slower" in n for n in plan.notes)


@pytest.mark.parametrize("target,version,match", [
    ("gtx1080ti", "10.0.1", r"needs TensorRT >= 8.5, < 8.7, this machine has 10.0.1"),
    ("xavier", "8.4.1", "needs TensorRT >= 8.5"),
    ("orin", "8.5.2", "needs TensorRT >= 8.6"),
])
def test_tensorrt_version_outside_range(target, version, match):
    with pytest.raises(MescError, match=match):
        check_build_request(target, "fp32", version)


def test_compute_capability_mismatch_names_both():
    with pytest.raises(MescError, match="sm_72.*sm_86.*--target host"):
        check_build_request("xavier", "fp16", "8.5.2", compute_capability="8.6")
    assert check_build_request("host", "fp16", "10.3", compute_capability="8.6") == []


@pytest.mark.parametrize("target,precision,version,core,match", [
    ("gtx1080ti", "int8", "8.6", 0, "has no DLA"),
    ("host", "fp16", "10.3", 0, "has no DLA"),
    ("xavier", "int8", "8.5.2", 2, "DLA cores 0..1"),
    ("xavier", "fp32", "8.5.2", 0, "FP16 or INT8 only"),
    ("orin", "fp16", "10.8", 0, "no DLA support"),
    ("orin", "int8", "11.0", 1, "no DLA support"),
    ("orin", "fp16", "11.4.0", 0, r"TensorRT 11\.4\.0 has no DLA support on Jetson"),
    ("xavier", "fp16", "11.4.1", 0, "needs TensorRT >= 8.5, < 9"),
])
def test_dla_refusals(target, precision, version, core, match):
    with pytest.raises(MescError, match=match):
        check_build_request(target, precision, version, dla_core=core)


def test_unknown_precision():
    with pytest.raises(MescError, match="--precision 'int4'"):
        check_build_request("host", "int4", "10.3")


# (target, precision, trt, dla) -> strongly typed, graph source, fp16 flag, int8 flag, implicit INT8
PLANS = [
    ("host", "fp32", "10.3", None, (True, "fp32", False, False, False)),
    ("host", "fp16", "11.0", None, (True, "fp16", False, False, False)),
    ("host", "int8", "10.12", None, (True, "int8", False, False, False)),
    ("host", "fp16", "8.6.1", None, (False, "fp16", True, False, False)),
    ("host", "int8", "8.6.1", None, (False, "int8", True, True, False)),
    ("gtx1080ti", "int8", "8.6.1", None, (False, "int8", False, True, False)),  # no FP16 flag on Pascal
    ("gtx1080ti", "fp32", "8.5.3", None, (False, "fp32", False, False, False)),
    ("xavier", "int8", "8.5.2", None, (False, "int8", True, True, False)),
    ("xavier", "int8", "8.5.2", 1, (False, "fp32", True, True, True)),  # implicit on DLA, 8.x
    ("xavier", "fp16", "8.5.2", 0, (False, "fp16", True, False, False)),
    ("orin", "int8", "10.3", 0, (False, "int8", True, True, False)),  # DLA on 10.x: flags, explicit Q/DQ
    ("orin", "fp16", "11.4.1", 1, (True, "fp16", False, False, False)),  # DLA on 11.4.1: strongly typed
]


@pytest.mark.parametrize("target,precision,version,core,want", PLANS)
def test_build_plan(target, precision, version, core, want):
    plan = plan_build(target, precision, version, dla_core=core)
    assert (plan.strongly_typed, plan.source, plan.fp16_flag, plan.int8_flag, plan.implicit_int8) == want
    assert plan.gpu_fallback == (core is not None)
    assert plan.variant == precision + (f"-dla{core}" if core is not None else "")
    assert plan.workspace_mb == get_target(target).workspace_mb
    if version.startswith("11"):
        assert not (plan.fp16_flag or plan.int8_flag or plan.implicit_int8), "TensorRT 11 has no such flags"


def _model(nodes, inputs, outputs, opset=17):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_onnx_ops_checked_per_tensorrt_version():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.BOOL, [1])
    cast = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BOOL, name="to_bool")], [x], [y])
    for version in ("8.5.2", "8.6.1", "10.3"):  # the 8.5/8.6 parsers take Cast to BOOL
        check_onnx_ops(cast, version, "seg.onnx")
    cast_eq = _model([helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BOOL, name="to_bool"),
                      helper.make_node("Equal", ["b", "b"], ["y"], name="eq_cast")], [x], [y])
    with pytest.raises(MescError, match="seg.onnx: node 'eq_cast' compares bool.*8.5.2"):
        check_onnx_ops(cast_eq, "8.5.2", "seg.onnx")
    check_onnx_ops(cast_eq, "10.3")
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [1])
    eq_input = _model([helper.make_node("Equal", ["flag", "flag"], ["y"], name="eq_in")], [flag], [y])
    with pytest.raises(MescError, match="'eq_in' compares bool"):
        check_onnx_ops(eq_input, "8.6.1")
    eq = _model([helper.make_node("Greater", ["x", "x"], ["b"], name="gt"),
                 helper.make_node("Equal", ["b", "b"], ["y"], name="eq")], [x], [y])
    with pytest.raises(MescError, match="'eq' compares bool"):
        check_onnx_ops(eq, "8.6")
    new = _model([helper.make_node("Identity", ["x"], ["z"])], [x],
                 [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])], opset=18)
    with pytest.raises(MescError, match="opset 18.*--opset 17"):
        check_onnx_ops(new, "8.6.1")
    check_onnx_ops(new, "10.0")


class _Pkg:
    def __init__(self, manifest):
        self.manifest, self.root = manifest, "pkg"

    @property
    def segments(self):
        return tuple(Segment(s["name"], "chunk", s["file"], (), ()) for s in self.manifest["segments"])

    @property
    def precisions(self):
        return {k: Precision.from_dict(k, v) for k, v in self.manifest.get("precisions", {}).items()}


def test_source_graphs_picks_prepared_or_says_what_to_run():
    segs = [{"name": "chunk0", "file": "onnx/chunk0.onnx"}, {"name": "head0", "file": "onnx/head0.onnx"}]
    pkg = _Pkg({"segments": segs, "precisions": {"fp16": {"segments": {"chunk0": "onnx_fp16/chunk0.onnx",
                                                                      "head0": "onnx_fp16/head0.onnx"}}}})
    assert source_graphs(pkg, plan_build("host", "fp32", "10.3"))["head0"] == "onnx/head0.onnx"
    assert source_graphs(pkg, plan_build("host", "fp16", "10.3"))["head0"] == "onnx_fp16/head0.onnx"
    assert source_graphs(pkg, plan_build("xavier", "int8", "8.5.2", dla_core=0))["chunk0"] == "onnx/chunk0.onnx"
    with pytest.raises(MescError, match="mesc prepare pkg --precision int8 --calib-data"):
        source_graphs(pkg, plan_build("host", "int8", "10.3"))
    del pkg.manifest["precisions"]
    # weak typing can still build FP16 from the FP32 graph with the builder flag; strong typing cannot
    assert source_graphs(pkg, plan_build("host", "fp16", "8.6"))["chunk0"] == "onnx/chunk0.onnx"
    with pytest.raises(MescError, match="no prepared fp16 graphs"):
        source_graphs(pkg, plan_build("host", "fp16", "10.3"))


def test_summarize_layers_reads_inspector_json():
    info = {"Layers": [
        {"Name": "{ForeignNode[/s1/Conv.../h1/Conv]}", "LayerType": "DLA",
         "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 16 == 0"}]},
        {"Name": "/Resize", "LayerType": "Resize", "Outputs": [{"Format/Datatype": "Row major linear FP32"}],
         "TacticName": "0x0"},
        {"Name": "/conv", "LayerType": "CaskConvolution",
         "Outputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
        "name-only layer",
    ]}
    s = summarize_layers(info)
    assert s["by_device"] == {"DLA": 1, "GPU": 2}
    assert s["by_precision"] == {"FP16": 1, "FP32": 1, "Int8": 1}
    assert s["layers"][-1] == {"name": "name-only layer"}


def test_dla_returns_on_tensorrt_11_4_1_for_orin_only():
    assert check_build_request("orin", "int8", "11.4.1", dla_core=0) == []
    assert check_build_request("orin", "fp16", "10.7.0", dla_core=1) == []
    drive = Target("drive", ("8.6",), trt_max="12", dla_cores=2)  # a DLA device that is not an Orin
    with pytest.raises(MescError, match="Jetson AGX Orin .*only, not on target 'drive'"):
        check_build_request(drive, "fp16", "11.4.1", dla_core=0)
    with pytest.raises(MescError, match="no DLA support on Jetson"):
        check_build_request("orin", "fp16", "11.4.0.106", dla_core=0)


def test_tf32_for_fp32_builds_unless_refused():
    assert plan_build("host", "fp32", "10.3").tf32
    assert not plan_build("host", "fp32", "10.3", tf32=False).tf32
    assert not plan_build("host", "fp16", "10.3").tf32 and not plan_build("host", "int8", "8.6.1").tf32


def test_summarize_layers_counts_myelin_foreign_nodes_on_the_gpu():
    info = {"Layers": [
        {"Name": "{ForeignNode[/Constant_7_output_0 + ONNXTRT_Broadcast.../Einsum_1]}", "LayerType": "Myelin",
         "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
        {"Name": "{ForeignNode[/s1/Conv.../h1/Conv]}", "LayerType": "DLA",
         "Outputs": [{"Format/Datatype": "Channel major FP16 format where channel % 16 == 0"}]},
        {"Name": "{ForeignNode[/a...]}", "Outputs": []},  # no type reported: not counted as DLA
    ]}
    s = summarize_layers(info)
    assert s["by_device"] == {"GPU": 1, "DLA": 1, "unknown": 1}
    assert [layer["device"] for layer in s["layers"]] == ["GPU", "DLA", "unknown"]


def test_timing_cache_is_keyed_by_tensorrt_and_gpu(tmp_path):
    from types import SimpleNamespace

    from mesc.engines.build import timing_cache_name, timing_cache_record

    a = timing_cache_name("orin", {"trt_version": "10.3.0", "compute_capability": "8.7"})
    assert a == "orin.trt10.3.0.sm87.timing.cache"
    assert a != timing_cache_name("orin", {"trt_version": "8.6.2", "compute_capability": "8.7"})
    assert a != timing_cache_name("host", {"trt_version": "10.3.0", "compute_capability": "8.6"})
    pkg = SimpleNamespace(root=tmp_path / "pkg")
    assert timing_cache_record(pkg, tmp_path / "pkg" / "engines" / a) == f"engines/{a}"
    assert timing_cache_record(pkg, tmp_path / "elsewhere.cache") == str(tmp_path / "elsewhere.cache")


def test_a_uint8_input_needs_tensorrt_8_5():
    """onnx-tensorrt's 8.5 GA changelog: ONNX networks with UINT8 I/O import from 8.5 on (the
    entry segment's images); earlier versions are refused naming --host-normalize."""
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 4, 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 3])
    entry = _model([helper.make_node("Cast", ["images"], ["y"], to=TensorProto.FLOAT)], [images], [y])
    for version in ("8.5.1", "8.6.1", "10.3"):
        check_onnx_ops(entry, version, "onnx/entry.onnx")
    with pytest.raises(MescError, match=r"onnx/entry.onnx: a uint8 graph input .* TensorRT 8.5 or later, not 8.4"):
        check_onnx_ops(entry, "8.4.3", "onnx/entry.onnx")
