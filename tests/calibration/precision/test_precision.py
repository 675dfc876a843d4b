"""FP16 / INT8 preparation on the toy skipnet: structure (TensorRT's rules), accuracy, package."""

import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from exported import export_toy
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from toy_data import calibration_images

from mesc.calibration.precision.fp16 import to_fp16
from mesc.calibration.precision.int8 import check_qdq
from mesc.calibration.precision.nodes import policy_tail
from mesc.errors import MescError
from mesc.package import Package

from runtime_checks import needs_ort_cuda

# Stated bars (16 images, random-weight toy model; measured 0.9996+/0.989+ agreement):
FP16_MIN_AGREEMENT, FP16_REL_LOGIT_ERR = 0.995, 0.01
INT8_MIN_AGREEMENT, INT8_REL_LOGIT_ERR = 0.97, 0.05


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return calibration_images(tmp_path_factory.mktemp("calib"), 16)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, images):
    from mesc.cli import cli

    out = export_toy("skipnet", tmp_path_factory.mktemp("pkg") / "skipnet", policy="top1")
    res = CliRunner().invoke(cli, ["prepare", str(out), "--precision", "fp16,int8", "--calib-data", str(images)])
    assert res.exit_code == 0, res.output
    return Package.load(out)  # checksums of every prepared file verified here


def _load(pkg, prec, seg):
    return onnx.load(str(pkg.path(pkg.manifest["precisions"][prec]["segments"][seg])))


def test_manifest_records_prepared_graphs_and_accuracy(prepared):
    for prec in ("fp16", "int8"):
        entry = prepared.manifest["precisions"][prec]
        assert set(entry["segments"]) == {s.name for s in prepared.segments}
        assert all(f in prepared.manifest["files"] for f in entry["segments"].values())
        assert entry["images"] == 16 and set(entry["accuracy"]) == {e.name for e in prepared.exits}
    assert not [p for p in prepared.root.iterdir() if p.name.startswith(".")], "temporary directories left"


def _converted(pkg):
    """The segments prepare converts: all but the entry segment, which every precision keeps FP32."""
    return [seg for seg in pkg.segments if seg.kind != "entry"]


@pytest.mark.parametrize("prec", ["fp16", "int8"])
def test_the_entry_stays_fp32_with_its_uint8_input(prepared, prec):
    """Its float32 division must round as the host's normalisation does: the graph is the FP32 one."""
    entry = prepared.entry
    assert entry is not None
    assert _load(prepared, prec, entry.name) == onnx.load(str(prepared.path(entry.file)))


def test_fp16_structure_and_accuracy(prepared):
    for seg in _converted(prepared):
        m = _load(prepared, "fp16", seg.name)
        fp32 = onnx.load(str(prepared.path(seg.file)))
        types = lambda g: {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output]}  # noqa: E731
        assert types(m.graph) == types(fp32.graph), "I/O types must stay as the package declares them"
        conv_w = [i for i in m.graph.initializer if i.dims and len(i.dims) == 4]
        assert conv_w and all(i.data_type == TensorProto.FLOAT16 for i in conv_w)
        fp16_out = {o for n in m.graph.node if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT16
                    for o in n.output}
        for node in m.graph.node:
            if node.op_type == "Resize":  # scales and interpolation kept FP32
                assert not any(x in fp16_out for x in node.input), node.name
        tail = [n for n in m.graph.node if n.name.startswith(f"{seg.exit}_policy")] if seg.kind == "head" else []
        assert not any(x in fp16_out for n in tail for x in n.input), "the policy tail reads FP16"
    for name, acc in prepared.manifest["precisions"]["fp16"]["accuracy"].items():
        assert acc["agreement"] >= FP16_MIN_AGREEMENT, (name, acc)
        assert acc["max_abs_logit_err"] <= FP16_REL_LOGIT_ERR * acc["logit_scale"], (name, acc)


def test_int8_graph_follows_tensorrt_rules(prepared):
    for seg in _converted(prepared):
        m = _load(prepared, "int8", seg.name)
        counts = check_qdq(m, where=seg.name)
        assert counts["QuantizeLinear"] > 0
        assert 13 <= m.opset_import[0].version <= 17
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        producer = {o: n for n in m.graph.node for o in n.output}
        for node in m.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                zp = inits[node.input[2]]
                assert zp.dtype == np.int8 and not zp.any()
            if node.op_type == "Conv":
                w = producer[node.input[1]]
                assert w.op_type == "DequantizeLinear" and inits[w.input[0]].dtype == np.int8
                scale = inits[w.input[1]]
                assert scale.shape == (inits[w.input[0]].shape[0],)  # per output channel
                assert next((a.i for a in w.attribute if a.name == "axis"), 1) == 0
                assert node.input[2] in inits and inits[node.input[2]].dtype == np.float32  # bias not quantised
        if seg.kind == "head":
            logits = next(e.logits for e in prepared.exits if e.segment == seg.name)
            tail = set(policy_tail(m, logits))
            assert not [n.name for n in m.graph.node if n.name in tail and "Linear" in n.op_type]
    for name, acc in prepared.manifest["precisions"]["int8"]["accuracy"].items():
        assert acc["agreement"] >= INT8_MIN_AGREEMENT, (name, acc)
        assert acc["max_abs_logit_err"] <= INT8_REL_LOGIT_ERR * acc["logit_scale"], (name, acc)


def _head_with_policy():
    """conv -> logits -> Softmax -> ReduceMax -> GreaterOrEqual -> Cast -> ReduceMean (a mini policy)."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    th = numpy_helper.from_array(np.array([0.5], np.float32), "th")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["e_logits"], name="conv"),
        helper.make_node("Softmax", ["e_logits"], ["p"], axis=1, name="e_policy/softmax"),
        helper.make_node("ReduceMax", ["p"], ["c"], axes=[1], keepdims=0, name="e_policy/max"),
        helper.make_node("GreaterOrEqual", ["c", "th"], ["ok"], name="e_policy/ge"),
        helper.make_node("Cast", ["ok"], ["okf"], to=TensorProto.FLOAT, name="e_policy/cast"),
        helper.make_node("ReduceMean", ["okf"], ["e_confidence"], axes=[1, 2], keepdims=0, name="e_policy/mean"),
    ]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("e_logits", TensorProto.FLOAT, [1, 4, 4, 4]),
                           helper.make_tensor_value_info("e_confidence", TensorProto.FLOAT, [1])],
                          initializer=[w, b, th])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_policy_tail_stays_fp32_and_unquantised():
    import onnxruntime as ort

    from mesc.calibration.precision.int8 import quantize_segment

    m = _head_with_policy()
    tail = policy_tail(m, "e_logits")
    assert tail == ["e_policy/softmax", "e_policy/max", "e_policy/ge", "e_policy/cast", "e_policy/mean"]
    half = to_fp16(m, tail, "head")
    kept = {n.name: n for n in half.graph.node if n.name in tail}
    assert list(kept) == tail
    assert {i.name: i.data_type for i in half.graph.initializer}["th"] == TensorProto.FLOAT
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [TensorProto.FLOAT] * 2
    x = np.random.default_rng(2).normal(size=(1, 3, 4, 4)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], ref[0], atol=1e-2)
    q = quantize_segment(m, [{"x": x}, {"x": -x}], tail, "minmax", "head")
    assert not [n for n in q.graph.node if n.name in tail and n.op_type.endswith("Linear")]
    assert [n.op_type for n in q.graph.node if n.name in tail] == ["Softmax", "ReduceMax", "GreaterOrEqual",
                                                                    "Cast", "ReduceMean"]


def test_zero_scale_is_refused_naming_the_tensor():
    m = _head_with_policy()
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "s"),
                          numpy_helper.from_array(np.array(0, np.int8), "z")])
    g.node.insert(0, helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"))
    with pytest.raises(MescError, match="seg: tensor 'x' got quantization scale \\[0.0\\] \\(zero or non-finite\\)"):
        check_qdq(m, where="seg")


def test_bad_calibration_images_are_named(tmp_path, prepared):
    from mesc.calibration.precision import prepare

    pkg = tmp_path / "pkg"
    shutil.copytree(prepared.root, pkg)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.zeros((30, 64, 3), np.uint8)).save(imgs / "small.png")
    with pytest.raises(MescError, match="small.png is 64x30 \\(WxH\\); the package expects 64x32"):
        prepare(pkg, ("int8",), calib_data=imgs)
    (imgs / "small.png").unlink()
    (imgs / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MescError, match="broken.png"):
        prepare(pkg, ("int8",), calib_data=imgs)
    with pytest.raises(MescError, match="--calib-data"):
        prepare(pkg, ("int8",))


def test_failed_preparation_leaves_package_untouched(tmp_path, prepared, images, monkeypatch):
    from mesc.calibration import precision
    from mesc.calibration.precision import int8

    pkg = tmp_path / "pkg"
    shutil.copytree(prepared.root, pkg)
    before = (pkg / "mesc.json").read_text()
    calls, real = [], int8.quantize_segment

    def boom(model, feeds, exclude, method, where):
        calls.append(where)
        if len(calls) == 2:
            raise MescError(f"{where}: boom")
        return real(model, feeds, exclude, method, where)

    monkeypatch.setattr(int8, "quantize_segment", boom)
    with pytest.raises(MescError, match="boom"):
        precision.prepare(pkg, ("int8",), calib_data=images, max_images=2)
    assert (pkg / "mesc.json").read_text() == before
    assert not [p for p in pkg.iterdir() if p.name.startswith(".")]
    Package.load(pkg)  # the old onnx_int8/ and its checksums are intact



@pytest.mark.gpu
@needs_ort_cuda
def test_fp16_graphs_on_cuda_agree_with_fp32_on_cpu(request, images):
    """The prepared FP16 graphs on the GPU (where FP16 pays) decide as the FP32 graphs on the CPU."""
    import mesc

    pytest.importorskip("onnxconverter_common", reason="FP16 preparation needs pip install 'mesc[prepare]'")
    prepared = request.getfixturevalue("prepared")

    batch = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(images.iterdir())[:8]])
    with mesc.load(prepared.root, device="cpu") as ref, \
            mesc.load(prepared.root, device="cuda:0", precision="fp16") as gpu:
        for k in range(len(ref.exit_names)):
            for p in (ref, gpu):
                p.set_thresholds(k, th_pix=0.5, th_img=0.5)
        a, b = ref(batch), gpu(batch)
    agree = np.mean([(ra.labels == rb.labels).mean() for ra, rb in zip(a, b) if ra.exit == rb.exit])
    assert sum(ra.exit == rb.exit for ra, rb in zip(a, b)) >= 7
    assert agree >= FP16_MIN_AGREEMENT, agree
