"""Weakly typed FP16/INT8 builds keep the exit policy's layers FP32 (no GPU, no TensorRT).

Everything of mesc's runs: ``build_engines`` finds the policy's nodes, ``compat.build_engine``
hands polygraphy its config steps, the step pins layers and sets the builder flag. Below it,
polygraphy's loaders are stand-ins that run those steps on a network parsed as onnx-tensorrt
8.5 names layers (:func:`trt_fakes.parse_like_onnx_tensorrt`), whose layers record what is set.
The truth a test checks against is the network's own record of which ONNX node made a layer
and the policy builder's names (every policy node is ``<exit>_policy/...``).
"""

from __future__ import annotations

import shutil
import sys
import types

import onnx
import pytest
from click.testing import CliRunner
from exported import export_toy
from trt_fakes import FakeBuilderConfig, FakeBuilderTensorRT, parse_like_onnx_tensorrt

from mesc.engines.build import build_engines
from mesc.engines.targets import plan_build
from mesc.package import Package
from mesc.package.describe import format_package

FACTS = {"trt_version": "8.5.3.1", "device": "test GPU", "compute_capability": "7.2"}
TRT = FakeBuilderTensorRT


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # th_pix: heads with the MESS windows (Slice + Add/Max counts, reductions, comparisons, ArgMax)
    return export_toy("skipnet", tmp_path_factory.mktemp("fp32pol") / "pkg", 6, policy="top1", th_pix=0.6,
                      verify=False)


@pytest.fixture
def pkg(exported, tmp_path):
    return Package.load(shutil.copytree(exported, tmp_path / "pkg"))


@pytest.fixture
def built(monkeypatch):
    """Stand-ins for polygraphy's loaders; returns {segment: (network, builder config)}."""
    from mesc.runtime.backends.trt import compat

    seen = {}

    def create_config(**kwargs):
        return lambda builder, network: FakeBuilderConfig()

    def postprocess_config(config, func):
        def call(builder, network):
            cfg = config(builder, network)
            func(builder, network, cfg)
            return cfg
        return call

    def network_from_onnx_path(path, strongly_typed=False):
        return lambda: (None, parse_like_onnx_tensorrt(onnx.load(path)), None)

    def engine_bytes_from_network(network, config, save_timing_cache=None):
        def build():
            _, net, _ = network()
            seen[current[0]] = (net, config(None, net))
            return b"plan"
        return build

    current = [None]
    real_build_engine = compat.build_engine

    def build_engine(onnx_path, *args, **kwargs):
        current[0] = onnx_path.stem
        return real_build_engine(onnx_path, *args, **kwargs)

    fake = types.ModuleType("polygraphy.backend.trt")
    fake.CreateConfig, fake.PostprocessConfig = create_config, postprocess_config
    fake.NetworkFromOnnxPath, fake.EngineBytesFromNetwork = network_from_onnx_path, engine_bytes_from_network
    fake.EngineFromBytes = lambda data: (lambda: object())
    fake.Calibrator = lambda feeds, cache=None: object()
    fake.Profile = object
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", fake)
    monkeypatch.setattr(compat, "tensorrt", lambda purpose=None: TRT)
    monkeypatch.setattr(compat, "engine_io", lambda engine: [])
    monkeypatch.setattr(compat, "layer_information", lambda engine: {})
    monkeypatch.setattr(compat, "build_engine", build_engine)
    return seen


def _is_float(t):
    return t is not None and t.dtype in (TRT.float32, TRT.float16) and not t.is_shape_tensor


def _computes_on_floats(layer):
    if layer.type in (TRT.LayerType.SHAPE, TRT.LayerType.CONSTANT):
        return False
    tensors = [layer.get_input(i) for i in range(layer.num_inputs)] + [layer.get_output(i)
                                                                       for i in range(layer.num_outputs)]
    return any(_is_float(t) for t in tensors)


def _check_pinned(net, is_policy):
    """Every float-computing layer a policy node made is FP32 with its float outputs FP32; no
    other layer has anything set. Returns how many were pinned."""
    pinned = 0
    for layer in net.layers:
        if is_policy(layer.node) and _computes_on_floats(layer):
            assert layer.precision_set == TRT.float32, layer.name
            floats = {i for i in range(layer.num_outputs) if _is_float(layer.get_output(i))}
            assert layer.output_types == {i: TRT.float32 for i in floats}, layer.name
            pinned += 1
        else:
            assert layer.precision_set is None and not layer.output_types, f"{layer.name} ({layer.node.name})"
    return pinned


def test_fp16_on_weak_typing_pins_every_policy_layer_and_no_backbone_layer(pkg, built):
    plan = plan_build("xavier", "fp16", FACTS["trt_version"])
    assert plan.fp16_flag and not plan.strongly_typed and plan.pins_policy_fp32
    entry = build_engines(pkg, plan, FACTS, {s.name: s.file for s in pkg.segments})
    heads = {ex.segment for ex in pkg.exits}
    flagged = {s.name for s in pkg.segments if s.kind != "entry"}  # the uint8 entry builds FP32, no flag
    for seg in pkg.segments:
        net, cfg = built[seg.name]
        pinned = _check_pinned(net, lambda node: "_policy/" in node.name)
        assert entry["segments"][seg.name].get("policy_fp32_layers") == (pinned if seg.name in flagged else None)
        if seg.name in heads:
            # the windows' Slice/Add/Max, the reductions, comparisons, the ArgMax's TopK, casts
            kinds = {layer.node.op_type for layer in net.layers if layer.precision_set}
            assert {"Slice", "Add", "Max", "ReduceMean", "ReduceSum", "Greater", "ArgMax", "Cast"} <= kinds
            assert cfg.flags == {TRT.BuilderFlag.OBEY_PRECISION_CONSTRAINTS} and not cfg.devices
        else:
            assert pinned == 0 and cfg.flags == set()
    # recorded per segment in the manifest's build entry
    build = Package.load(pkg.root).engines["xavier"]["fp16"]
    assert set(build.policy_fp32_layers) == flagged
    assert all(build.policy_fp32_layers[h] > 50 for h in heads)
    # and mesc inspect shows them
    shown = next(line for line in format_package(Package.load(pkg.root)).splitlines()
                 if line.strip().startswith("xavier/fp16:"))
    assert f"{len(pkg.segments)} segments" in shown
    assert "; policy layers kept FP32: " + ", ".join(f"{s} {n}" for s, n in build.policy_fp32_layers.items()) in shown


def test_prepared_fp16_graphs_pin_their_fp32_policy_too(pkg, built):
    """Xavier's usual path: the prepared FP16 graphs, whose policy tail is FP32 in the ONNX but only
    a hint to weakly typed TensorRT; the same policy nodes are found in them."""
    pytest.importorskip("onnxconverter_common")
    from mesc.calibration.precision import prepare
    from mesc.engines.build import source_graphs

    prepare(pkg.root, ("fp16",))
    pkg = Package.load(pkg.root)
    plan = plan_build("xavier", "fp16", FACTS["trt_version"])
    sources = source_graphs(pkg, plan)
    assert all(src.startswith("onnx_fp16/") for src in sources.values())
    entry = build_engines(pkg, plan, FACTS, sources)
    for ex in pkg.exits:
        net, cfg = built[ex.segment]
        assert _check_pinned(net, lambda node: "_policy/" in node.name) > 50
        assert entry["segments"][ex.segment]["policy_fp32_layers"] > 50
        assert cfg.flags == {TRT.BuilderFlag.OBEY_PRECISION_CONSTRAINTS}


def test_the_parser_names_unnamed_nodes_and_their_unnamed_helpers_are_pinned_too(pkg, built):
    """onnx-tensorrt names an unnamed node's layers 'node_of_<output>' (8.5's Softmax leaves them
    unnamed): the policy is found through those names and the layers' output tensors."""
    head = pkg.segment(pkg.exits[0].segment)
    model = onnx.load(str(pkg.path(head.file)))
    policy_outputs = {n.output[0] for n in model.graph.node if "_policy/" in n.name}
    for k, node in enumerate(model.graph.node):
        if k % 3 == 0:
            node.name = ""
    onnx.save(model, str(pkg.path(head.file)))
    plan = plan_build("xavier", "fp16", FACTS["trt_version"])
    build_engines(pkg, plan, FACTS, {s.name: s.file for s in pkg.segments})
    net, cfg = built[head.name]
    assert _check_pinned(net, lambda node: node.output[0] in policy_outputs) > 50
    assert cfg.flags == {TRT.BuilderFlag.OBEY_PRECISION_CONSTRAINTS}


def test_dla_int8_puts_the_pinned_policy_on_the_gpu(pkg, built):
    """Implicit INT8 on DLA (TensorRT 8.x calibrates the FP32 graph): DLA has no FP32, so the
    pinned layers go to the GPU, and only OBEY is set (newer polygraphy sets PREFER on DLA)."""
    plan = plan_build("xavier", "int8", FACTS["trt_version"], dla_core=0)
    assert plan.implicit_int8 and plan.pins_policy_fp32
    build_engines(pkg, plan, FACTS, {s.name: s.file for s in pkg.segments}, feeds={s.name: [] for s in pkg.segments})
    for ex in pkg.exits:
        net, cfg = built[ex.segment]
        pinned = {layer.name for layer in net.layers if layer.precision_set}
        assert pinned and cfg.devices == {name: TRT.DeviceType.GPU for name in pinned}
        assert cfg.flags == {TRT.BuilderFlag.OBEY_PRECISION_CONSTRAINTS}


@pytest.mark.parametrize("target,precision,version", [("host", "fp32", "8.5.3.1"), ("orin", "fp16", "10.3.0")])
def test_fp32_and_strongly_typed_builds_pin_nothing(pkg, built, target, precision, version):
    """FP32 has no flag to lower the policy; strongly typed TensorRT takes the prepared graph's types."""
    plan = plan_build(target, precision, version)
    assert not plan.pins_policy_fp32
    entry = build_engines(pkg, plan, dict(FACTS, trt_version=version), {s.name: s.file for s in pkg.segments})
    for seg in pkg.segments:
        net, cfg = built[seg.name]
        assert not any(layer.precision_set or layer.output_types for layer in net.layers) and cfg.flags == set()
        assert "policy_fp32_layers" not in entry["segments"][seg.name]


def test_mesc_build_prints_the_pinned_layers(monkeypatch, tmp_path):
    import mesc.engines.build as build_module
    from mesc.cli import cli

    seg = {"placement": {"by_device": {"GPU": 3}, "by_precision": {"FP32": 3}}, "policy_fp32_layers": 41}
    entry = {"segments": {"head0": seg, "chunk0": {"placement": seg["placement"]}}, "dir": "engines/xavier-fp16",
             "trt_version": "8.5.3.1", "device": "test GPU", "compute_capability": "7.2"}
    monkeypatch.setattr(build_module, "build", lambda *a, **k: entry)
    res = CliRunner().invoke(cli, ["build", str(tmp_path), "--target", "xavier", "--precision", "fp16"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if "head0" in x)
    assert line.endswith("policy layers kept FP32: 41")
    assert "kept FP32" not in next(x for x in res.output.splitlines() if "chunk0" in x)
