"""INT8 Q/DQ placement: the exit policy reads FP32 logits (checked by tensor), and the call into
``quantize_static`` fits every onnxruntime signature mesc accepts."""

import inspect
import shutil

import numpy as np
import onnx
import pytest
from exported import export_toy
from onnx import helper, numpy_helper
from toy_data import SHAPE, calibration_images

from mesc.calibration.precision.int8 import WEIGHTED_INPUT, check_qdq, quantize_segment, static_options
from mesc.calibration.precision.nodes import exit_tails, tail_tensors
from mesc.errors import MescError

QDQ = ("QuantizeLinear", "DequantizeLinear")

# onnxruntime 1.16.3, onnxruntime/quantization/quantize.py (read from the PyPI wheel
# onnxruntime-1.16.3-cp311-cp311-manylinux_2_17_x86_64): no calibration_providers. onnxruntime 1.16
# cannot be installed beside numpy 2, so its signature is pinned here as a literal.
QUANTIZE_STATIC_1_16_3 = ("model_input", "model_output", "calibration_data_reader", "quant_format",
                          "op_types_to_quantize", "per_channel", "reduce_range", "activation_type", "weight_type",
                          "nodes_to_quantize", "nodes_to_exclude", "use_external_data_format", "calibrate_method",
                          "extra_options")


def _recorder(params, calls):
    """A stand-in for ``quantize_static`` with the signature ``params``: it binds each call as
    the real function would (TypeError on an unknown keyword) and writes the model unchanged."""
    def quantize_static(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        calls.append(bound.arguments)
        shutil.copyfile(bound.arguments["model_input"], bound.arguments["model_output"])

    sig = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                               default=None if i > 2 else inspect.Parameter.empty)
                             for i, p in enumerate(params)])
    quantize_static.__signature__ = sig
    return quantize_static


def _conv_head():
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["e_logits"], name="conv"),
             helper.make_node("Softmax", ["e_logits"], ["p"], axis=1, name="e_policy/softmax"),
             helper.make_node("ReduceMax", ["p"], ["e_confidence"], axes=[1, 2, 3], keepdims=0, name="e_policy/max")]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("e_confidence", onnx.TensorProto.FLOAT, [1])],
                          initializer=[w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("params", [QUANTIZE_STATIC_1_16_3, "installed"])
def test_quantize_static_call_fits_the_signature(params, monkeypatch):
    import onnxruntime
    from onnxruntime import quantization as q

    if params == "installed":
        params = tuple(inspect.signature(q.quantize_static).parameters)
        if tuple(int(x) for x in onnxruntime.__version__.split(".")[:2]) >= (1, 21):
            assert "calibration_providers" in params  # the dev install
        else:  # the floor, 1.16 (the Python 3.8 stage): the literal above is its signature
            assert params == QUANTIZE_STATIC_1_16_3
    calls = []
    monkeypatch.setattr(q, "quantize_static", _recorder(params, calls))
    x = np.ones((1, 3, 4, 4), np.float32)
    quantize_segment(_conv_head(), [{"x": x}], [], "minmax", "head")
    assert len(calls) == 1
    assert ("calibration_providers" in calls[0]) == ("calibration_providers" in params)
    assert static_options(q.quantize_static) == (
        {"calibration_providers": ["CPUExecutionProvider"]} if "calibration_providers" in params else {})
    assert calls[0]["extra_options"]["OpTypesToExcludeOutputQuantization"] == ["Conv", "ConvTranspose", "Gemm",
                                                                               "MatMul"]


def test_check_qdq_finds_onnxruntime_named_qdq_on_the_logits():
    """onnxruntime names the pair it puts on a tensor after the tensor, not after a tail node:
    a check by node name passes this graph, the check by tensor refuses it."""
    m = _conv_head()
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                          numpy_helper.from_array(np.array(0, np.int8), "z")])
    g.node[0].output[0] = "conv_out"
    g.node.insert(1, helper.make_node("QuantizeLinear", ["conv_out", "s", "z"], ["q"], name="e_logits_QuantizeLinear"))
    g.node.insert(2, helper.make_node("DequantizeLinear", ["q", "s", "z"], ["e_logits"],
                                      name="e_logits_DequantizeLinear"))
    tail = ["e_policy/softmax", "e_policy/max"]
    with pytest.raises(MescError, match="head: QuantizeLinear 'e_logits_QuantizeLinear' quantizes 'conv_out', "
                                        "which the exit policy reads"):
        check_qdq(m, tail, "head")


def test_a_head_conv_keeps_its_logits_fp32():
    m = _conv_head()
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.normal(size=(1, 3, 4, 4)).astype(np.float32)} for _ in range(4)]
    q = quantize_segment(m, feeds, ["e_policy/softmax", "e_policy/max"], "minmax", "head")
    producer = {o: n for n in q.graph.node for o in n.output}
    assert producer["e_logits"].op_type == "Conv"
    assert not [n.name for n in q.graph.node if n.op_type in QDQ and n.input[0] == "e_logits"]
    assert producer[producer["e_logits"].input[0]].op_type == "DequantizeLinear"  # the input is quantised


@pytest.fixture(scope="module")
def calib_images(tmp_path_factory):
    return calibration_images(tmp_path_factory.mktemp("int8-calib"), 6)


@pytest.mark.parametrize("policy_at", ["output", "native"])
def test_prepared_int8_policy_reads_no_quantized_tensor(policy_at, tmp_path, calib_images):
    """On a toy package with the in-graph policy: after ``mesc prepare``, no Q/DQ node reads or
    writes an exit's logits (native ones too) or any tensor its policy tail reads."""
    from mesc.calibration.precision import prepare
    from mesc.package import Package

    root = export_toy("three_exits", tmp_path / "pkg", input_shape=SHAPE, strides=[2, 4, 4], policy="top1",
                      policy_at=policy_at)
    prepare(root, ("int8",), calib_data=calib_images, max_images=6)
    pkg = Package.load(root)
    int8 = pkg.manifest["precisions"]["int8"]["segments"]
    checked = 0
    for seg in pkg.segments:
        if seg.kind in ("entry", "chunk"):  # no policy tail: the entry stays FP32, chunks are all quantised
            continue
        m = onnx.load(str(pkg.path(int8[seg.name])))
        guarded = tail_tensors(m, exit_tails(pkg, m, seg), WEIGHTED_INPUT)
        ex = next(e for e in pkg.exits if seg.name in (e.segment, e.tail))
        logits = ex.logits if seg.kind == "tail" else (ex.policy_logits or ex.logits)
        assert logits in guarded, seg.name
        qdq_tensors = {t for n in m.graph.node if n.op_type in QDQ for t in (n.input[0], *n.output)}
        assert not qdq_tensors & guarded, (seg.name, sorted(qdq_tensors & guarded))
        checked += 1
    assert checked == len(pkg.exits) * (2 if policy_at == "native" else 1)
