"""A stand-in for TensorRT engines over :class:`cuda_fakes.RecordingRuntime`'s fake device memory:
each segment's "engine" is an ONNX Runtime CPU session of its ONNX graph, run at the addresses the
runner sets, queued on the stream (so CUDA graph capture records it). It counts what the runner
asks of the context, so tests see which calls a warm run still makes."""

import collections
import ctypes

import numpy as np

from mesc.runtime import cuda


def host_array(ptr, shape, dtype):
    """The fake device memory at ``ptr`` as a numpy array (no copy)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer((ctypes.c_char * max(n, 1)).from_address(ptr), dtype, n // dtype.itemsize).reshape(shape)


class FakeContext:
    def __init__(self, sess, counts, fail_capture=False):
        self.sess, self.counts, self.fail_capture = sess, counts, fail_capture
        self.inputs = {i.name: i for i in sess.get_inputs()}
        self.shapes, self.addresses, self.out_shapes = {}, {}, {}

    def set_input_shape(self, name, shape):
        self.counts["set_input_shape"] += 1
        self.shapes[name] = tuple(shape)
        self.out_shapes = None
        return True

    def _infer(self):
        # output shapes for the input shapes set (inferred once all are set, as TensorRT does)
        if self.out_shapes is None:
            feeds = {n: np.zeros(s, _dtype(self.inputs[n].type)) for n, s in self.shapes.items()}
            outs = self.sess.run(None, feeds)
            self.out_shapes = {o.name: v.shape for o, v in zip(self.sess.get_outputs(), outs)}
        return self.out_shapes

    def get_tensor_shape(self, name):
        self.counts["get_tensor_shape"] += 1
        return self.shapes.get(name) or self._infer()[name]

    def set_tensor_address(self, name, ptr):
        self.counts["set_tensor_address"] += 1
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        self.counts["execute_async_v3"] += 1
        rt = cuda.runtime()
        if self.fail_capture and stream in rt.capturing:
            return False
        # what is bound now is what the queued kernel reads and writes, as on a GPU
        shapes, addresses = dict(self.shapes), dict(self.addresses)
        outs = {o.name: (o, self._infer()[o.name]) for o in self.sess.get_outputs()}

        def kernel():
            feeds = {n: host_array(addresses[n], s, _dtype(self.inputs[n].type)).copy() for n, s in shapes.items()}
            for (name, (o, shape)), value in zip(outs.items(), self.sess.run(list(outs), feeds)):
                host_array(addresses[name], shape, value.dtype)[...] = value

        rt.enqueue(stream, kernel)
        return True


def _dtype(ort_type):
    return {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
            "tensor(float16)": np.float16, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8}[ort_type]


class FakeTensorRT:
    """Just the enum the runner reads."""

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"


def fake_trt_runner(pkg, graphs=True, fail_capture=(), stream=None):
    """A :class:`TrtRunner` whose contexts are fake contexts (:class:`FakeContext`) of ``pkg``'s segments; the
    CUDA runtime must already be a :class:`RecordingRuntime`. ``.counts`` counts context calls."""
    import onnxruntime as ort

    from mesc.runtime.backends.trt.runner import TrtRunner
    from mesc.runtime.devices import Device

    r = TrtRunner.__new__(TrtRunner)
    r.device, r.cuda_graphs, r.timing, r.graph_fallbacks = Device("cuda", 0), graphs, False, {}
    r.trt, r.is_active = FakeTensorRT, True
    r.counts = collections.Counter()
    r.contexts, r.io = {}, {}
    for seg in pkg.segments:
        sess = ort.InferenceSession(str(pkg.path(seg.file)), providers=["CPUExecutionProvider"])
        r.contexts[seg.name] = FakeContext(sess, r.counts, seg.name in fail_capture)
        r.io[seg.name] = {
            "inputs": [i.name for i in sess.get_inputs()], "outputs": [o.name for o in sess.get_outputs()],
            "dtype": {t.name: np.dtype(_dtype(t.type)) for t in [*sess.get_inputs(), *sess.get_outputs()]}}
    r._open_memory(cuda.Stream(stream))
    return r


# --- the builder's side: a network parsed as onnx-tensorrt parses, layers that record precision ---

class FakeBuilderTensorRT:
    """The enums and data types the builder code reads (values are plain strings)."""

    float32, float16, int32, bool = "FLOAT", "HALF", "INT32", "BOOL"

    class LayerType:
        SHAPE, CONSTANT, SOFTMAX, SHUFFLE, ELEMENTWISE, TOPK, OTHER = (
            "SHAPE", "CONSTANT", "SOFTMAX", "SHUFFLE", "ELEMENTWISE", "TOPK", "OTHER")

    class BuilderFlag:
        OBEY_PRECISION_CONSTRAINTS, PREFER_PRECISION_CONSTRAINTS = "OBEY", "PREFER"

    class DeviceType:
        GPU, DLA = "GPU", "DLA"

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class ProfilingVerbosity:
        DETAILED = "DETAILED"


class FakeTensor:
    def __init__(self, name, dtype, shape_tensor=False):
        self.name, self.dtype, self.is_shape_tensor = name, dtype, shape_tensor


class FakeLayer:
    """A network layer that records what the builder sets on it; ``node`` is the ONNX node that
    made it (the test's truth, which the code under test never reads)."""

    def __init__(self, name, kind, inputs, outputs, node):
        self.name, self.type, self.node = name, kind, node
        self._inputs, self._outputs = list(inputs), list(outputs)
        self.precision_set, self.output_types = None, {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, i):
        return self._inputs[i]

    def get_output(self, i):
        return self._outputs[i]

    @property
    def precision(self):
        return self.precision_set or FakeBuilderTensorRT.float32

    @precision.setter
    def precision(self, dtype):
        self.precision_set = dtype

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class FakeNetwork:
    def __init__(self):
        self.layers = []

    num_layers = property(lambda self: len(self.layers))

    def get_layer(self, i):
        return self.layers[i]


class FakeBuilderConfig:
    def __init__(self, flags=()):
        self.flags, self.devices = set(flags), {}

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def set_device_type(self, layer, device):
        self.devices[layer.name] = device


_BOOL_OPS = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or"}


def parse_like_onnx_tensorrt(model) -> FakeNetwork:
    """A network of ``model`` (an onnx ModelProto) with the layer names onnx-tensorrt 8.5 gives
    (``ImporterContext::registerLayer``): a node's registered layers are named after it
    (``node_of_<output>`` when unnamed), the second on with a suffix from a counter shared by
    the whole parse; helpers it leaves unregistered keep TensorRT's ``(Unnamed Layer* i)`` name:
    Softmax's reshape back (8.5 registers the softmax with ``node.name()``, empty for an unnamed
    node), a constant operand's constant and broadcast shuffle, ArgMax's squeeze after TopK, and
    every second node gets two registered layers."""
    trt = FakeBuilderTensorRT
    net, tensors, used, counter = FakeNetwork(), {}, set(), [0]
    inits = {i.name for i in model.graph.initializer}
    for i in model.graph.input:
        tensors[i.name] = FakeTensor(i.name, trt.float32)

    def unique(base):
        name = base
        while name in used:
            name = f"{base}_{counter[0]}"
            counter[0] += 1
        used.add(name)
        return name

    def add(name, kind, inputs, outputs, node):
        layer = FakeLayer(name or f"(Unnamed Layer* {len(net.layers)}) [{kind}]", kind, inputs, outputs, node)
        net.layers.append(layer)
        return layer

    for k, node in enumerate(model.graph.node):
        base = node.name or "node_of_" + node.output[0]
        ins = []
        for x in node.input:
            if x in inits:  # a constant operand: constant + broadcast shuffle, both unregistered
                c = add("", trt.LayerType.CONSTANT, [], [FakeTensor(f"{x}:const", trt.float32)], node)
                s = add("", trt.LayerType.SHUFFLE, c._outputs, [FakeTensor(f"{x}:bcast", trt.float32)], node)
                ins.append(s._outputs[0])
            elif x:
                ins.append(tensors[x])
        to = next((a.i for a in node.attribute if a.name == "to"), 1)
        out_type = (trt.bool if node.op_type in _BOOL_OPS else trt.int32 if node.op_type in ("ArgMax", "Shape")
                    else {1: trt.float32, 6: trt.int32, 7: trt.int32, 9: trt.bool}.get(to, trt.float32))
        outs = [FakeTensor(o, out_type, node.op_type == "Shape") for o in node.output]
        if node.op_type == "Softmax":
            soft = add(unique(node.name) if node.name else "", trt.LayerType.SOFTMAX, ins,
                       [FakeTensor(f"{base}:soft", trt.float32)], node)
            add("", trt.LayerType.SHUFFLE, soft._outputs, outs, node)
        elif node.op_type == "ArgMax":
            topk = add(unique(base), trt.LayerType.TOPK, ins,
                       [FakeTensor(f"{base}:values", trt.float32), FakeTensor(f"{base}:indices", trt.int32)], node)
            add("", trt.LayerType.SHUFFLE, topk._outputs[1:], outs, node)
        elif node.op_type == "Shape":
            add(unique(base), trt.LayerType.SHAPE, ins, outs, node)
        elif k % 2:
            first = add(unique(base), trt.LayerType.OTHER, ins, [FakeTensor(f"{base}:mid", trt.float32)], node)
            add(unique(base), trt.LayerType.ELEMENTWISE, first._outputs, outs, node)
        else:
            add(unique(base), trt.LayerType.OTHER, ins, outs, node)
        tensors.update((o.name, o) for o in outs)
    return net
