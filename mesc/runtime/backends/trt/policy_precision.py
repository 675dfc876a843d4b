"""The exit policy's layers kept FP32 in weakly typed builds with the FP16 or INT8 flag.

Weakly typed TensorRT (8.x, and 10.x on DLA) treats float tensor types as hints: with the FP16
flag it may run any layer in FP16, the policy's softmax, window counts and reductions included,
even where the ONNX graph says FP32, and the exit decisions then shift (a 33x33 window count
averaged and compared with 0.5 is exact only in FP32). Here the layers that come from the
policy's ONNX nodes get ``layer.precision`` and their float outputs' types set to FP32, and the
builder is told to obey them. Strongly typed builds (TensorRT >= 10 on the GPU) take every
type from the prepared graph and need none of this.

Which ONNX node a layer comes from, as onnx-tensorrt names layers (read in its sources,
release/8.5-GA and release/10.1-GA: ``ImporterContext::registerLayer``, ``generateUniqueName``,
``getNodeName``, ``ModelImporter.cpp``'s ``parseGraph``):

* a layer an importer registers is named after its node: the node's name (``node_of_<first
  output>`` for an unnamed node), then ``<name>_<n>`` for the node's further layers, ``n`` a
  counter shared by the whole parse, so not consecutive;
* the tensors a node outputs are named after the ONNX outputs, whichever layer makes them;
* helper layers are often not registered at all (Softmax's reshape back to the input shape,
  broadcast shuffles of a constant operand, casts) and keep TensorRT's default name
  ``(Unnamed Layer* <i>) [<type>]``; 8.5's Softmax registers with ``node.name()`` even when it
  is empty, so an unnamed Softmax node's layer is unnamed too.

So a layer belongs to a policy node when its name or one of its output tensors says so, and an
unnamed layer belongs to the policy when it reads a policy layer's output or feeds a policy
layer (a node's helpers sit between its inputs and its named output; a backbone node's last
layer is named by its output tensor, so this never walks into the backbone).
"""

from __future__ import annotations

import re

_SUFFIX = re.compile(r"^(.*)_\d+$")


def parser_node_name(node) -> str:
    """The name onnx-tensorrt gives ``node`` (an onnx NodeProto) and its layers (getNodeName)."""
    if not node.name and node.output:
        return "node_of_" + node.output[0]
    return node.name


def _owner(layer, node_names, tensor_owner):
    """The ONNX node ``layer`` comes from, or None where neither its name nor its outputs say."""
    name = layer.name
    if name in node_names:
        return name
    m = _SUFFIX.match(name)
    if m and m.group(1) in node_names:
        return m.group(1)
    for i in range(layer.num_outputs):
        out = layer.get_output(i)
        if out is not None and out.name in tensor_owner:
            return tensor_owner[out.name]
    return None


def policy_layers(network, node_outputs: dict, policy: set) -> list:
    """The layers of ``network`` that compute the policy, in network order.

    ``node_outputs``: every ONNX node of the parsed graph by its parser name
    (:func:`parser_node_name`) -> its output tensor names; ``policy``: the parser names of the
    policy's nodes (what ``mesc prepare`` keeps FP32).
    """
    tensor_owner = {t: n for n, outs in node_outputs.items() for t in outs if t}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    owners = [_owner(layer, node_outputs, tensor_owner) for layer in layers]
    inside = [owner is not None and owner in policy for owner in owners]
    made_by = {}
    for k, layer in enumerate(layers):
        for i in range(layer.num_outputs):
            out = layer.get_output(i)
            if out is not None:
                made_by[out.name] = k
    reads = [[made_by.get(t.name) for t in _inputs(layer)] for layer in layers]
    changed = True
    while changed:  # unnamed helpers join the policy layers they sit next to
        changed = False
        for k, sources in enumerate(reads):
            if owners[k] is None and not inside[k] and any(s is not None and inside[s] for s in sources):
                inside[k] = changed = True
            if inside[k]:
                for s in sources:
                    if s is not None and owners[s] is None and not inside[s]:
                        inside[s] = changed = True
    return [layer for layer, keep in zip(layers, inside) if keep]


def _inputs(layer):
    return [t for t in (layer.get_input(i) for i in range(layer.num_inputs)) if t is not None]


def _float(tensor, trt) -> bool:
    return tensor.dtype in (trt.float32, trt.float16) and not tensor.is_shape_tensor


def pin_fp32(layers, trt) -> list:
    """Set FP32 on ``layers`` that compute on floats: the precision, and the type of each float
    output (boolean and integer outputs, comparisons' and ArgMax's, keep theirs). Shape and
    constant layers, and layers with no float tensor, have no precision to set and are skipped.
    Returns the layers pinned."""
    pinned = []
    for layer in layers:
        if layer.type in (trt.LayerType.SHAPE, trt.LayerType.CONSTANT):
            continue
        outs = [(i, layer.get_output(i)) for i in range(layer.num_outputs)]
        float_outs = [i for i, t in outs if t is not None and _float(t, trt)]
        if not float_outs and not any(_float(t, trt) for t in _inputs(layer)):
            continue
        layer.precision = trt.float32
        for i in float_outs:
            layer.set_output_type(i, trt.float32)
        pinned.append(layer)
    return pinned
