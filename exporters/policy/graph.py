"""An exit head's graph and the policy appended to it: the checks every in-graph policy makes
on the head and its logits, the pieces every kind starts from (labels, softmax, confidences),
the skeleton of a score kind (:func:`append_score`), and the way back (:func:`strip_policy`).

Every in-graph policy leaves the head with what the runtime reads: ``<prefix>_labels`` (int32
N x H x W, unless a tail gives them) and ``<prefix>_confidence`` (float32, N: the image's
score, compared on the host with the exit's thresholds); MESS also takes ``<prefix>_th_pix``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from mesc.errors import ExportError, MescError
from mesc.exporters.policy.builder import GraphBuilder

MIN_OPSET = 13


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ExportError("the head model has no default-domain opset import")


def find_value_info(model: onnx.ModelProto, name: str):
    """The ValueInfo of tensor ``name`` (graph input/output/value_info, else inferred)."""
    g = model.graph
    for vi in list(g.output) + list(g.input) + list(g.value_info):
        if vi.name == name and vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            return vi
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.output) + list(inferred.graph.value_info):
        if vi.name == name:
            return vi
    return None


def tensor_dims(vi):
    """Per dim: an int when static, else the dim_param string (or None)."""
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def all_names(model: onnx.ModelProto) -> set:
    g = model.graph
    names = {i.name for i in g.input} | {o.name for o in g.output} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
    return names


def check_head(model, prefix: str) -> int:
    """The head's opset, after checking that ``model`` is a graph a policy can be appended to
    under ``prefix``."""
    if not isinstance(model, onnx.ModelProto):
        raise MescError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    if not isinstance(prefix, str) or not prefix or "/" in prefix:
        raise MescError(f"prefix must be a non-empty string without '/', got {prefix!r}")
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ExportError(f"the policy needs opset >= {MIN_OPSET}; the head uses opset {opset}")
    return opset


def logits_dims(model, logits: str, confidence: str = "top1") -> list:
    """N, M, H, W of ``logits``, checked to be what the policy can read."""
    vi = find_value_info(model, logits)
    if vi is None:
        raise MescError(f"tensor {logits!r} (the logits, N x M x H x W float32) is not in the head graph")
    if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise MescError(f"tensor {logits!r} must be float32 (N x M x H x W), got "
                        f"{TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}")
    dims = tensor_dims(vi)
    if len(dims) != 4:
        raise MescError(f"tensor {logits!r} must have shape N x M x H x W, got rank {len(dims)} {dims}")
    if confidence == "entropy":
        check_static_classes(logits, dims)
    for what, d in (("H", dims[2]), ("W", dims[3])):
        if isinstance(d, int) and d < 1:
            raise MescError(f"tensor {logits!r} has empty {what} ({dims})")
    return dims


def check_static_classes(logits: str, dims) -> None:
    m_dim = dims[1]
    if not (isinstance(m_dim, int) and m_dim >= 2):
        raise MescError(f"entropy confidence needs a static class count M >= 2 in {logits!r} "
                        f"(N x M x H x W), got M={m_dim!r}")


def check_prefix_unused(model, prefix: str, new_names) -> None:
    taken = all_names(model)
    clash = [n for n in new_names if n in taken]
    if clash or any(n.startswith(f"{prefix}_policy/") for n in taken):
        raise MescError(f"prefix {prefix!r} is already used in the head graph ({clash or 'policy nodes'}); "
                        "pick a unique prefix per exit")


def argmax_labels(b: GraphBuilder, logits: str, out: str | None) -> str:
    """The N,1,H,W int64 argmax over classes; also as int32 N,H,W output ``out`` when given."""
    # Labels from the logits, not the probabilities: ties stay exact ties (first index wins).
    labels4 = b.op("ArgMax", [logits], axis=1, keepdims=1, select_last_index=0)
    if out:
        b.op("Cast", [b.op("Squeeze", [labels4, b.const("axes", [1], np.int64)])], to=TensorProto.INT32, out=out)
    return labels4


def softmax_parts(b: GraphBuilder, logits: str) -> tuple[str, str, str]:
    """(z, exp z, S): the pieces every confidence is computed from, so that a policy reading
    several (the learned one) takes one softmax."""
    # Softmax written out over the class axis: ORT's CPU Softmax on a non-last axis transposes
    # the whole tensor, which alone cost more than the rest of the policy. With z = l - max l,
    # S = sum exp z: top-1 probability = 1/S exactly (exp 0 = 1), and the entropy is
    # H = log S - sum(exp(z) * z)/S, which never takes log(0) where a probability underflows.
    z = b.op("Sub", [logits, b.reduce("ReduceMax", logits, [1], keepdims=1)])
    ez = b.op("Exp", [z])
    return z, ez, b.reduce("ReduceSum", ez, [1], keepdims=1)  # S: N,1,H,W, >= 1


def confidence_from_softmax(b: GraphBuilder, parts: tuple[str, str, str], confidence: str, m_dim) -> str:
    """Per-pixel top-1 probability or 1 - H/log M (N,1,H,W) from :func:`softmax_parts`."""
    z, ez, s = parts
    one = b.const("one", 1.0, np.float32)
    if confidence == "top1":
        return b.op("Div", [one, s])
    ent = b.op("Sub", [b.op("Log", [s]), b.op("Div", [b.reduce("ReduceSum", b.op("Mul", [ez, z]), [1], keepdims=1), s])])
    return b.op("Sub", [one, b.op("Mul", [ent, b.const("inv_logm", 1.0 / math.log(m_dim), np.float32)])])


def pixel_confidence(b: GraphBuilder, logits: str, confidence: str, m_dim) -> str:
    """Per-pixel top-1 probability or 1 - H/log M, N,1,H,W."""
    return confidence_from_softmax(b, softmax_parts(b, logits), confidence, m_dim)


class HeadLogits:
    """The logits a score kind reads, inside one builder: ``dims`` (N, M, H, W; ints where
    static), ``probabilities()`` (the softmax, N x M x H x W) and ``confidence(kind)`` (N,1,H,W),
    each built once however often a kind asks."""

    def __init__(self, b: GraphBuilder, name: str, dims):
        self.b, self.name, self.dims = b, name, list(dims)
        self._parts = None
        self._conf: dict = {}
        self._p = None

    def parts(self) -> tuple[str, str, str]:
        if self._parts is None:
            self._parts = softmax_parts(self.b, self.name)
        return self._parts

    def confidence(self, kind: str) -> str:
        if kind not in self._conf:
            if kind == "entropy":
                check_static_classes(self.name, self.dims)
            self._conf[kind] = confidence_from_softmax(self.b, self.parts(), kind, self.dims[1])
        return self._conf[kind]

    def probabilities(self) -> str:
        """exp z / S: the class probabilities (N x M x H x W)."""
        if self._p is None:
            _, ez, s = self.parts()
            self._p = self.b.op("Div", [ez, s])
        return self._p


def with_nodes(model, b: GraphBuilder, logits: str, dims) -> onnx.ModelProto:
    """A copy of ``model`` with the builder's nodes and initializers, ``logits`` kept as an output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.extend(b.nodes)
    out.graph.initializer.extend(b.inits)
    if logits not in {o.name for o in out.graph.output}:
        out.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, dims))
    return out


def check_graph(model: onnx.ModelProto, logits: str) -> None:
    """onnx.checker plus strict shape inference; a failure here is a bug in the builder."""
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the policy graph appended to {logits!r} does not validate: {err}") from err


def append_score(model: onnx.ModelProto, logits: str, prefix: str, score, labels: bool = True) -> onnx.ModelProto:
    """A copy of the head ``model`` with a score kind appended to tensor ``logits`` (float32 N x
    M x H x W): ``score(b, head, out)`` (a :class:`GraphBuilder`, the :class:`HeadLogits`, the
    output's name) writes the image's score (float32, N) to ``out``, which becomes
    ``{prefix}_confidence``; with ``labels`` the head also outputs ``{prefix}_labels``. No
    pixel threshold is read, so the head takes no ``{prefix}_th_pix`` input."""
    opset = check_head(model, prefix)
    dims = logits_dims(model, logits)
    n_dim, _, h_dim, w_dim = dims
    labels_name, conf_name = f"{prefix}_labels", f"{prefix}_confidence"
    check_prefix_unused(model, prefix, (labels_name, conf_name, f"{prefix}_th_pix"))
    b = GraphBuilder(prefix, opset)
    argmax_labels(b, logits, labels_name if labels else None)
    score(b, HeadLogits(b, logits, dims), conf_name)
    out = with_nodes(model, b, logits, dims)
    g = out.graph
    if labels:
        g.output.append(helper.make_tensor_value_info(labels_name, TensorProto.INT32, [n_dim, h_dim, w_dim]))
    g.output.append(helper.make_tensor_value_info(conf_name, TensorProto.FLOAT, [n_dim]))
    check_graph(out, logits)
    return out


def append_labels(model: onnx.ModelProto, logits: str, prefix: str) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``{prefix}_labels`` (int32 N x H x W): the ArgMax of
    ``logits`` over classes (first maximal index, as np.argmax), which stays an output."""
    vi = find_value_info(model, logits)
    if vi is None or vi.type.tensor_type.elem_type != TensorProto.FLOAT or len(tensor_dims(vi)) != 4:
        raise MescError(f"tensor {logits!r} (N x M x H x W float32 logits) is not in the graph")
    dims = tensor_dims(vi)
    n_dim, _, h_dim, w_dim = dims
    b = GraphBuilder(prefix, default_opset(model))
    argmax_labels(b, logits, f"{prefix}_labels")
    out = with_nodes(model, b, logits, dims)
    out.graph.output.append(helper.make_tensor_value_info(f"{prefix}_labels", TensorProto.INT32, [n_dim, h_dim, w_dim]))
    check_graph(out, logits)
    return out


def strip_policy(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """A copy of the head ``model`` without the policy appended under ``prefix`` (by
    :func:`~mesc.exporters.policy.mess.append_policy` or a score kind's builder): its
    nodes and constants (all named ``{prefix}_policy/...``), the ``{prefix}_th_pix`` input and
    the labels and confidence outputs. The logits stay an output."""
    mark = f"{prefix}_policy/"
    policy_io = {f"{prefix}_th_pix", f"{prefix}_labels", f"{prefix}_confidence"}
    g = model.graph
    nodes = [n for n in g.node if not n.name.startswith(mark)]
    if len(nodes) == len(g.node):
        raise MescError(f"the head graph has no policy appended under the prefix {prefix!r} "
                        f"(no node named {mark}...)")
    produced = {o for n in g.node if n.name.startswith(mark) for o in n.output}
    dangling = sorted({i for n in nodes for i in n.input if i in produced or i == f"{prefix}_th_pix"})
    if dangling:
        raise MescError(f"layers of the head read the policy's tensors {dangling}; the policy cannot be replaced")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.node[:]
    og.node.extend(nodes)
    keep_init = [t for t in g.initializer if not t.name.startswith(mark)]
    del og.initializer[:]
    og.initializer.extend(keep_init)
    for field in (og.input, og.output):
        keep = [v for v in field if v.name not in policy_io]
        del field[:]
        field.extend(keep)
    keep_vi = [v for v in og.value_info if v.name not in produced]
    del og.value_info[:]
    og.value_info.extend(keep_vi)
    return out


__all__ = ["HeadLogits", "MIN_OPSET", "all_names", "append_labels", "append_score", "argmax_labels", "check_graph",
           "check_head", "check_prefix_unused", "check_static_classes", "confidence_from_softmax", "default_opset",
           "find_value_info", "logits_dims", "pixel_confidence", "softmax_parts", "strip_policy", "tensor_dims",
           "with_nodes"]
