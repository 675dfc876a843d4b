"""Which network layers come from which ONNX node, by onnx-tensorrt's naming (no TensorRT)."""

from __future__ import annotations

from trt_fakes import FakeLayer, FakeNetwork, FakeTensor

from mesc.runtime.backends.trt.policy_precision import policy_layers


def _net(*layers):
    net = FakeNetwork()
    for name, ins, outs in layers:
        net.layers.append(FakeLayer(name, "OTHER", ins, outs, None))
    return net


def test_a_nodes_further_layers_are_its_name_and_a_counter():
    """'p_policy/Max_3_17' is the policy node 'p_policy/Max_3''s second layer (registerLayer's
    generateUniqueName, a counter shared by the parse); 'conv_2' is the backbone's, even where
    nothing else ties the layer to its node (here: no tensor it reads or makes)."""
    x, t, side, c = (FakeTensor(name, "FLOAT") for name in "xtsc")
    net = _net(("conv", [x], [c]), ("conv_2", [x], [FakeTensor("c2", "FLOAT")]),
               ("p_policy/Max_3", [c], [t]), ("p_policy/Max_3_17", [x], [side]))
    nodes = {"conv": ["c"], "p_policy/Max_3": ["t"]}
    assert [layer.name for layer in policy_layers(net, nodes, {"p_policy/Max_3"})] == [
        "p_policy/Max_3", "p_policy/Max_3_17"]


def test_a_node_named_like_another_nodes_suffix_is_itself():
    a, b = FakeTensor("a", "FLOAT"), FakeTensor("b", "FLOAT")
    net = _net(("x_1", [], [a]), ("x_1_2", [], [b]))
    assert [layer.name for layer in policy_layers(net, {"x_1": ["a"], "x_1_2": ["b"]}, {"x_1_2"})] == ["x_1_2"]
