"""Input handed over by protocol, without a host round trip: CPU tensors through ``__dlpack__``
read in place (the same data pointer reaches the runner), CUDA tensors through
``__cuda_array_interface__`` or ``__dlpack__`` copied device to device on the runner's stream after
the producer's stream (checked on the recording CUDA stand-in and the fake engines)."""

import ctypes

import numpy as np
import pytest

# torch's tensors are the producers under test; the Python 3.8 stage has no torch
torch = pytest.importorskip("torch")

import mesc
from mesc.package import Package
from mesc.runtime import InputError, cuda
from mesc.runtime.device_input import from_dlpack_capsule
from mesc.runtime.pipeline import Pipeline
from cuda_fakes import RecordingRuntime
from trt_fakes import fake_trt_runner


class _DLPackOnly:
    """Only the DLPack protocol of an array (so that the pipeline cannot see it is numpy)."""

    def __init__(self, arr):
        self.arr, self.streams = arr, []

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return self.arr.__dlpack__()

    def __dlpack_device__(self):
        return self.arr.__dlpack_device__()


def _uploads(pipe):
    """Record the data pointer of every array the runner uploads."""
    seen, upload = [], pipe.runner.upload

    def spy(array, slot="input"):
        if slot == "input":
            seen.append(np.asarray(array).ctypes.data)
        return upload(array, slot)

    pipe.runner.upload = spy
    return seen


def _same(a, b):
    assert [r.exit for r in a] == [r.exit for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.labels, rb.labels)


@pytest.mark.parametrize("wrap", ["numpy", "numpy-dlpack", "torch-dlpack"])
def test_cpu_input_reaches_the_runner_without_a_copy(pkg_graph, images, wrap):
    x = np.ascontiguousarray(images[:4])
    given = {"numpy": x, "numpy-dlpack": _DLPackOnly(x), "torch-dlpack": torch.from_numpy(x)}[wrap]
    ptr = x.ctypes.data if wrap != "torch-dlpack" else given.data_ptr()
    with mesc.load(pkg_graph) as pipe:
        ref = pipe(x.copy())
        seen = _uploads(pipe)
        _same(ref, pipe(given))
    assert seen == [ptr]  # the caller's memory itself: no x[rows], no normalised copy


def test_a_non_finite_dlpack_batch_is_still_refused(pkg_graph, images):
    x = images[:2].copy()
    x[1, 0, 0, 0] = np.nan
    with mesc.load(pkg_graph) as pipe, pytest.raises(InputError, match=r"NaN or infinite values \(image\(s\) \[1\]"):
        pipe(torch.from_numpy(x))


def test_dlpack_capsules_are_parsed_in_place():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = from_dlpack_capsule(a.__dlpack__(), a)
    assert (d.ptr, d.shape, d.dtype) == (a.ctypes.data, (2, 3, 4), np.float32)
    assert d.rows(1, 2).ptr == a[1:].ctypes.data and d.rows(1, 2).shape == (1, 3, 4)
    d.release()
    t = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    d = from_dlpack_capsule(t.__dlpack__(), t)
    assert (d.ptr, d.shape, d.dtype) == (t.data_ptr(), (2, 3), np.int64)
    d.release()
    with pytest.raises(InputError, match="not contiguous"):
        from_dlpack_capsule(torch.zeros(4, 6)[:, ::2].__dlpack__())


class _FakeCudaTensor:
    """A batch (float32, or uint8 images) in the recording runtime's device memory, shown as CUDA memory."""

    def __init__(self, rt, x, stream):
        self.x = np.ascontiguousarray(x)
        self.ptr = rt.malloc(self.x.nbytes)
        ctypes.memmove(self.ptr, self.x.ctypes.data, self.x.nbytes)
        self.stream = stream

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.x.shape, "typestr": self.x.dtype.str, "data": (self.ptr, False), "strides": None,
                "version": 3, "stream": self.stream}


@pytest.fixture
def rt(monkeypatch):
    fake = RecordingRuntime()
    monkeypatch.setattr(cuda, "_RUNTIME", fake)
    return fake


def _run_device_tensor(pkg_graph, rt, x, producer_stream=None):
    """``x`` handed to the fake-TensorRT pipeline as a CUDA tensor (after a warm-up call on the
    host array), its results checked against ONNX Runtime on the host; (pipeline, tensor given),
    the recording runtime reset just before the call."""
    pkg = Package.load(pkg_graph)
    with mesc.load(pkg_graph) as ref:
        expected = ref(x)
    pipe = Pipeline(pkg, fake_trt_runner(pkg))
    pipe(x)  # warm
    given = _FakeCudaTensor(rt, x, producer_stream)
    rt.reset()
    _same(expected, pipe(given))
    return pipe, given


@pytest.mark.parametrize("producer_stream", [77, None])
def test_cuda_input_is_copied_on_the_device_after_the_producers_stream(pkg_graph, images, rt, producer_stream):
    pipe, given = _run_device_tensor(pkg_graph, rt, images, producer_stream)
    assert rt.count["upload"] == 0  # nothing from the host but the thresholds, written earlier
    first = rt.copies[0]
    assert first[:4] == (cuda.DEVICE_TO_DEVICE, first[1], given.ptr, given.x.nbytes) and first[4] == pipe.runner.stream.ptr
    # the device waits for the producer's stream; no host wait is spent on it
    assert rt.count["stream_wait"] == (producer_stream is not None)


def test_cuda_dlpack_input_names_the_runners_stream(pkg_graph, images, rt):
    pkg = Package.load(pkg_graph)
    with mesc.load(pkg_graph) as ref:
        expected = ref(images[:2])
    pipe = Pipeline(pkg, fake_trt_runner(pkg))
    x = np.ascontiguousarray(images[:2])

    class _CudaDLPack(_DLPackOnly):
        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA: the capsule (numpy's, on the fake "device") is read in place

    given = _CudaDLPack(x)
    pipe(images[:2])  # warm: the thresholds are uploaded once
    rt.reset()
    _same(expected, pipe(given))
    assert given.streams == [pipe.runner.stream.ptr]  # the producer orders its work before mesc's stream
    assert rt.count["upload"] == 0 and rt.copies[0][2] == x.ctypes.data


def test_cuda_input_needs_a_stream_runner(pkg_graph, images):
    class _Cuda(_DLPackOnly):
        def __dlpack_device__(self):
            return (2, 0)

    with mesc.load(pkg_graph) as pipe, pytest.raises(InputError, match="needs a runner on a CUDA stream"):
        pipe(_Cuda(images[:1]))


def test_device_output_hands_labels_and_logits_over_by_dlpack(pkg_graph, images, rt):
    """Results left on the "device" (the stand-in's host memory, so numpy can take them): equal
    to the host results, in memory of their own that the next call does not overwrite, read by
    DLPack without a copy."""
    from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage
    from mesc.runtime.device_output import DeviceResult
    from mesc.runtime.devices import Device

    pkg, cpu = Package.load(pkg_graph), Device("cpu")
    with mesc.load(pkg_graph) as ref:
        expected = ref(images, logits=True)
        with pytest.raises(InputError, match="needs a runner on a CUDA stream"):
            ref(images[:1], device_output=True)
    with Pipeline(pkg, OrtRunner(SessionsFromPackage(pkg, cpu), cpu, io="stream")) as pipe:
        got = pipe(images, logits=True, device_output=True)
        pipe(images[::-1], logits=True)  # reuses every fixed buffer
        for e, g in zip(expected, got):
            assert isinstance(g.labels, DeviceResult) and g.exit == e.exit
            labels = np.from_dlpack(g.labels)
            assert labels.ctypes.data == g.labels.ptr  # no copy
            np.testing.assert_array_equal(labels, e.labels)
            np.testing.assert_array_equal(g.labels.numpy(), e.labels)
            np.testing.assert_allclose(torch.from_dlpack(g.logits).numpy(), e.logits, atol=1e-6, rtol=0)


def test_device_output_needs_the_in_graph_policy(pkg_host, images):
    with mesc.load(pkg_host) as pipe, pytest.raises(InputError, match="in-graph policy"):
        pipe(images[:1], device_output=True)


def test_a_refused_cuda_batch_is_handed_back(pkg_graph, images, rt):
    """A CUDA batch of the wrong size is refused in one line, and its DLPack deleter runs."""
    pkg = Package.load(pkg_graph)
    pipe = Pipeline(pkg, fake_trt_runner(pkg))
    released = []

    class _Cuda(_DLPackOnly):
        def __dlpack_device__(self):
            return (2, 0)

    import mesc.runtime.device_input as di

    real = di.from_dlpack_capsule

    def spy(capsule, owner=None):
        d = real(capsule, owner)
        inner = d._release
        d._release = lambda: (released.append(True), inner())
        return d

    di.from_dlpack_capsule = spy
    try:
        with pytest.raises(InputError, match="takes 32 x 64"):
            pipe(_Cuda(np.zeros((1, 3, 16, 64), np.float32)))
    finally:
        di.from_dlpack_capsule = real
    assert released == [True]


def test_a_cuda_uint8_batch_runs_the_entry_on_the_device(pkg_graph, rt, tmp_path):
    """uint8 N x H x W x C images already on the device: one device copy of their bytes, then the
    entry; a package without an entry refuses them in one line (nothing would normalise them)."""
    from exported import export_toy
    from toy_data import SHAPE

    u8 = np.random.default_rng(6).integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
    _, given = _run_device_tensor(pkg_graph, rt, u8)
    assert rt.count["upload"] == 0
    assert rt.copies[0][:4] == (cuda.DEVICE_TO_DEVICE, rt.copies[0][1], given.ptr, u8.nbytes)
    old_root = export_toy("three_exits", tmp_path / "old", input_shape=SHAPE, strides=[2, 4, 4], policy="top1",
                          dynamic_batch=True, verify=False, host_normalize=True)
    old = Package.load(old_root)
    with pytest.raises(InputError, match="has no entry segment to normalise uint8 images on the device"):
        Pipeline(old, fake_trt_runner(old))(_FakeCudaTensor(rt, u8, None))
