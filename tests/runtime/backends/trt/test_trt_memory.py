"""The TensorRT runner's tensors without a GPU: upload, row gather and download go through the
one CUDA access path (:mod:`mesc.runtime.cuda`), here answered by host memory; pooled buffers
come back for reuse."""

import numpy as np
import pytest

from mesc.runtime import cuda
from mesc.runtime.backends.trt.runner import BufferPool, TrtRunner
from mesc.runtime.devices import Device
from cuda_fakes import HostMemoryRuntime


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(cuda, "_RUNTIME", HostMemoryRuntime())
    r = TrtRunner.__new__(TrtRunner)  # no TensorRT needed for the tensors
    r.device, r.stream, r.pool = Device("cuda", 0), cuda.Stream(), BufferPool()
    yield r
    r.pool.close()


def test_upload_take_download_round_trip(runner):
    x = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    h = runner.upload(x)
    assert runner.shape(h) == (4, 2, 3)
    np.testing.assert_array_equal(runner.download(h), x)
    rows = [0, 2, 3]  # two runs of consecutive rows: two device-to-device copies
    np.testing.assert_array_equal(runner.download(runner.take(h, rows)), x[rows])
    kinds = [c[1] for c in cuda.runtime().calls if c[0] == "memcpy_async"]
    assert kinds.count(cuda.DEVICE_TO_DEVICE) == 2
    assert all(c[2] == runner.stream.ptr for c in cuda.runtime().calls if c[0] == "memcpy_async")


def test_buffers_return_to_the_pool(runner):
    x = np.zeros((2, 3), np.float32)
    first = runner.upload(x).ptr  # the handle goes at once, its buffer back to the pool
    assert runner.upload(x).ptr == first and len(runner.pool.all) == 1
