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
