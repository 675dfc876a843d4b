"""FP16 / INT8 preparation of a ``--policy-at native`` package: each exit's policy (in its head,
on the native logits) and its tail segment's labels stay FP32 and unquantised, as they do at
the output resolution (tests/calibration/precision/test_precision.py)."""


import numpy as np
import onnx
import pytest
from exported import export_toy
from onnx import TensorProto
from PIL import Image

from mesc.calibration.precision.nodes import policy_tail
from mesc.package import Package


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from mesc.calibration.precision import prepare

    images = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(4):
        img = np.kron(rng.uniform(0, 255, (4, 8, 3)), np.ones((8, 8, 1))) + rng.normal(0, 8, (32, 64, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(images / f"{i}.png")
    out = export_toy("skipnet", tmp_path_factory.mktemp("pkg") / "native", policy="top1", policy_at="native",
                     verify=False)
    prepare(out, ("fp16", "int8"), calib_data=images)
    return Package.load(out)


def _graphs(pkg, seg):
    fp32 = onnx.load(str(pkg.path(seg.file)))
    return fp32, {prec: onnx.load(str(pkg.path(pkg.manifest["precisions"][prec]["segments"][seg.name])))
                  for prec in ("fp16", "int8")}


def _dtypes(model) -> dict:
    """Element type of every tensor the graph names (shape inference fills in the inner ones)."""
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _kept_fp32(model, nodes, where):
    types = _dtypes(model)
    by_name = {n.name: n for n in model.graph.node}
    for name in nodes:
        node = by_name[name]
        half = [t for t in [*node.input, *node.output] if types.get(t) == TensorProto.FLOAT16]
        assert not half, f"{where}: policy node {name} ({node.op_type}) computes in FP16 on {half}"


def _unquantised(model, nodes, where):
    q = [n.name for n in model.graph.node if n.name in set(nodes) and n.op_type.endswith("Linear")]
    assert not q, f"{where}: Q/DQ nodes in the policy: {q}"


def test_native_policy_and_tail_labels_stay_fp32_and_unquantised(prepared):
    exits = prepared.exits
    assert all(ex.policy["at"] == "native" and ex.tail for ex in exits)
    for ex in exits:
        for seg_name, logits in ((ex.segment, ex.policy_logits), (ex.tail, ex.logits)):
            fp32, by_prec = _graphs(prepared, prepared.segment(seg_name))
            own = [n.name for n in fp32.graph.node if n.name.startswith(f"{ex.name}_policy/")]
            assert own, f"{seg_name}: no policy nodes to check"
            for prec, model in by_prec.items():
                where = f"{seg_name} ({prec})"
                tail = policy_tail(model, logits)
                # the policy's every node is still there, downstream of the logits it reads
                assert set(own) <= set(tail), f"{where}: policy nodes left the tail: {sorted(set(own) - set(tail))}"
                _kept_fp32(model, tail, where)
                _unquantised(model, tail, where)
            # the tail's upsampling reads FP32 scales and sizes, as at the output resolution
            for node in by_prec["fp16"].graph.node:
                if node.op_type == "Resize":
                    types = _dtypes(by_prec["fp16"])
                    assert types.get(node.input[0]) != TensorProto.FLOAT16, f"{seg_name}: Resize reads FP16"
