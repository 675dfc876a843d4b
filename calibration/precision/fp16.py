"""FP16 graphs for TensorRT strong typing: onnxconverter-common's converter, with the exit
policy tail and Resize kept in FP32 and the graph I/O left FP32 (the package's tensors)."""

from __future__ import annotations

from mesc.errors import MescError
from mesc.lazy import require

FP16_EXTRA = "prepare"
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _isolate_outputs(model) -> None:
    """Route every float graph output through its own Identity.

    onnxconverter-common 1.14-1.16 types an output FP16 despite keep_io_types when a node also
    reads it (a live tensor the segment itself reads on) or a blocked op (Resize) makes it.
    """
    onnx = require("onnx")
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    for out in graph.output:
        name = out.name
        if out.type.tensor_type.elem_type != _FLOAT or name not in producer:
            continue
        inner = f"{name}__fp16src"
        src = producer[name]
        src.output[list(src.output).index(name)] = inner
        for node in graph.node:
            for i, x in enumerate(node.input):
                if x == name:
                    node.input[i] = inner
        graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}__out"))


def to_fp16(model, keep_fp32_nodes, where: str = ""):
    """Return an FP16 copy of ``model`` (a ModelProto); ``keep_fp32_nodes`` (node names, a
    suffix of the graph such as the policy tail) are left exactly as they are, in FP32.

    The converter's own node block list mistypes outputs of blocked nodes (1.14-1.16), so the
    graph is cut instead: the body before the kept nodes is converted with FP32 I/O, and the
    kept nodes are appended unchanged, reading the body's FP32 outputs.
    """
    float16 = require("onnxconverter_common.float16", extra=FP16_EXTRA, purpose="FP16 preparation")
    onnx = require("onnx")
    helper = onnx.helper
    g = model.graph
    keep = set(keep_fp32_nodes)
    body_nodes = [n for n in g.node if n.name not in keep]
    tail_nodes = [n for n in g.node if n.name in keep]
    made_by_body = {o for n in body_nodes for o in n.output} | {i.name for i in g.input}
    read_by_tail = {x for n in tail_nodes for x in n.input}
    read_by_body = {x for n in body_nodes for x in n.input}
    types = {v.name: v for v in list(g.value_info) + list(g.output) + list(g.input)}
    inferred = onnx.shape_inference.infer_shapes(model)
    types.update({v.name: v for v in inferred.graph.value_info})
    body_outputs = [o for o in g.output if o.name in made_by_body and o.name not in {i.name for i in g.input}]
    for name in sorted(read_by_tail & made_by_body - {o.name for o in body_outputs}):
        if name in {i.name for i in g.initializer}:
            continue
        if name not in types:
            raise MescError(f"{where}: cannot type tensor '{name}' that the FP32 tail reads")
        body_outputs.append(types[name])
    body = helper.make_model(
        helper.make_graph(body_nodes, g.name + "_body", list(g.input), body_outputs,
                          initializer=[i for i in g.initializer if i.name in read_by_body]),
        opset_imports=list(model.opset_import), ir_version=model.ir_version)
    _isolate_outputs(body)
    try:
        conv = float16.convert_float_to_float16(body, keep_io_types=True, op_block_list=float16.DEFAULT_OP_BLOCK_LIST)
    except Exception as err:  # the converter raises plain ValueError/KeyError on graphs it cannot type
        raise MescError(f"{where}: FP16 conversion failed: {err}") from err
    # Initializers the tail reads stay FP32, under their own name if the body also uses one.
    originals = {i.name: i for i in g.initializer}
    converted = {i.name: i for i in conv.graph.initializer}
    extra = []
    for node in tail_nodes:
        for k, x in enumerate(node.input):
            if x in originals and converted.get(x) is not None and converted[x].data_type != originals[x].data_type:
                node.input[k] = x + "__fp32"
                if all(e.name != node.input[k] for e in extra):
                    t = onnx.TensorProto()
                    t.CopyFrom(originals[x])
                    t.name = x + "__fp32"
                    extra.append(t)
            elif x in originals and x not in converted and all(e.name != x for e in extra):
                extra.append(originals[x])  # once, however many tail nodes read it
    graph = helper.make_graph(list(conv.graph.node) + tail_nodes, g.name, list(g.input), list(g.output),
                              initializer=list(conv.graph.initializer) + extra)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    want = {o.name: o.type.tensor_type.elem_type for o in g.output}
    got = {o.name: o.type.tensor_type.elem_type for o in conv.graph.output}
    changed = [n for n in got if n in want and got[n] != want[n]]
    if changed:
        raise MescError(f"{where}: FP16 conversion changed the type of outputs {changed}")
    onnx.checker.check_model(out)
    return out
