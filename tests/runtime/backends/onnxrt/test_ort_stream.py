"""The ONNX Runtime runner's stream path (what it runs on CUDA with onnxruntime >= 1.17) on the CPU:
real onnxruntime sessions over OrtValues whose memory the recording CUDA stand-in copies
(:class:`cuda_fakes.RecordingRuntime`), so that results, every copy of the row gather and the
count of what a warm call costs are checked without a GPU."""

import collections

import numpy as np
import pytest

import mesc
from mesc.package import Package
from mesc.runtime import cuda
from mesc.runtime.backends.onnxrt import SessionsFromPackage
from mesc.runtime.backends.onnxrt import providers as ort_providers
from mesc.runtime.backends.onnxrt.runner import OrtRunner
from mesc.runtime.devices import Device
from mesc.runtime.pipeline import Pipeline
from cuda_fakes import RecordingRuntime
from runtime_checks import assert_same_results

CPU = Device("cpu")


@pytest.fixture
def rt(monkeypatch):
    fake = RecordingRuntime()
    monkeypatch.setattr(cuda, "_RUNTIME", fake)
    return fake


class _CountingOrt:
    """onnxruntime, with the OrtValue allocations and IOBindings the runner makes counted."""

    def __init__(self, real, counts):
        self._real, self._counts = real, counts

        class OrtValue:
            @staticmethod
            def ortvalue_from_shape_and_type(*a, **k):
                counts["ortvalue_alloc"] += 1
                return real.OrtValue.ortvalue_from_shape_and_type(*a, **k)

            ortvalue_from_numpy = staticmethod(real.OrtValue.ortvalue_from_numpy)

        self.OrtValue = OrtValue

    def __getattr__(self, name):
        return getattr(self._real, name)


def _stream_pipe(pkg_dir, counts=None):
    pkg = Package.load(pkg_dir)
    runner = OrtRunner(SessionsFromPackage(pkg, CPU), CPU, io="stream")
    if counts is not None:
        runner._ort = _CountingOrt(runner._ort, counts)
    return Pipeline(pkg, runner)


_same = assert_same_results


def _spread(pipes, images):
    ref = pipes[0]
    conf = [np.array([r.confidences[ex] for r in step]) for ex, step in zip(ref.exit_names, ref.anytime(images))]
    remaining = np.arange(len(images))
    for k in range(len(conf) - 1):
        v = np.sort(conf[k][remaining])
        i = int(np.argmax(np.diff(v[:-1]))) if len(v) > 2 else 0
        th = float(v[i] + v[i + 1]) / 2
        for p in pipes:
            p.set_thresholds(k, th_img=th)
        remaining = remaining[conf[k][remaining] < th]


def test_stream_path_gives_the_direct_paths_results(pkg, images, rt):
    """Both packages (in-graph policy and host policy), batch 1, compacted batches, budgeted,
    logits, anytime, a new th_pix written in place."""
    with mesc.load(pkg) as ref, _stream_pipe(pkg) as test:
        assert test.runner.io_path == "stream" and ref.runner.io_path == "direct"
        if ref.in_graph:
            _spread((ref, test), images)
        for _ in range(2):
            _same(ref(images), test(images))
            _same([ref(im[None])[0] for im in images[:3]], [test(im[None])[0] for im in images[:3]])
            _same(ref(images, exit=1), test(images, exit=1))
            _same(ref(images[:4], logits=True), test(images[:4], logits=True))
            for a, b in zip(ref.anytime(images[:3]), test.anytime(images[:3])):
                _same(a, b)
        if ref.in_graph:
            assert len({r.exit for r in ref(images)}) == 3  # the batch compacted on the way
            for p in (ref, test):
                p.set_thresholds(0, th_pix=0.8)
            _same(ref(images), test(images))


def test_stream_path_warm_call_costs(pkg_graph, images, rt):
    """After warm-up, one image through every exit: no OrtValue or device allocation, no new
    IOBinding, one upload, one wait per exit reached, every copy on the runner's stream."""
    counts = collections.Counter()
    with _stream_pipe(pkg_graph, counts) as pipe:
        for k in range(len(pipe.exit_names) - 1):
            pipe.set_thresholds(k, th_img=1.0)
        for _ in range(2):
            pipe(images[:1])
        bindings = len(pipe.runner.bindings)
        rt.reset()
        counts.clear()
        r = pipe(images[:1])[0]
        assert r.exit == pipe.exit_names[-1]
        assert counts["ortvalue_alloc"] == 0 and len(pipe.runner.bindings) == bindings
        assert all(b.outputs is not None for b in pipe.runner.bindings.values())  # bound once, fixed
        assert rt.count["malloc"] == rt.count["malloc_host"] == 0
        assert rt.count["upload"] == 1 and rt.count["blocking_copy"] == 0
        assert rt.count["sync"] == len(pipe.exit_names)
        assert {c[4] for c in rt.copies} == {pipe.runner.stream.ptr}


@pytest.mark.parametrize("rows", [[0, 2], [0, 2, 3, 5], [1, 3, 5], [0, 1, 2, 3, 4, 5]])
def test_stream_path_gather_copies_each_run_of_rows(rows, rt, pkg_graph):
    with _stream_pipe(pkg_graph) as pipe:
        run = pipe.runner
        x = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
        h = run.upload(x)
        rt.reset()
        out = run.take(h, rows)
        row = 7 * 4
        runs, start = [], 0
        for j in range(1, len(rows) + 1):
            if j == len(rows) or rows[j] != rows[j - 1] + 1:
                runs.append((start, rows[start], j - start))
                start = j
        assert rt.copies == [(cuda.DEVICE_TO_DEVICE, out.data_ptr() + d * row, h.data_ptr() + s * row, n * row,
                              run.stream.ptr) for d, s, n in runs]
        np.testing.assert_array_equal(run.download(out), x[rows])


def test_cuda_options_and_the_path_per_version():
    assert ort_providers.cuda_features("1.16.3") == {"stream": False, "graphs": False}
    assert ort_providers.cuda_features("1.17.1") == {"stream": True, "graphs": False}
    assert ort_providers.cuda_features("1.18.0") == {"stream": True, "graphs": True}
    chosen = [(ort_providers.CUDA, {"device_id": 1}), ort_providers.CPU]
    got = ort_providers.with_cuda_options(chosen, 0x1234, True)
    assert got == [(ort_providers.CUDA, {"device_id": 1, "user_compute_stream": str(0x1234),
                                         "enable_cuda_graph": "1"}), ort_providers.CPU]
    assert chosen[0][1] == {"device_id": 1}  # the loader's own list is left as it was


def test_cpu_keeps_the_direct_path_and_a_bad_path_is_refused(pkg_graph):
    pkg = Package.load(pkg_graph)
    assert OrtRunner(SessionsFromPackage(pkg, CPU), CPU).io_path == "direct"
    with pytest.raises(mesc.runtime.BackendError, match="io must be one of"):
        OrtRunner(SessionsFromPackage(pkg, CPU), CPU, io="fast")


def test_anytime_walks_of_a_static_batch_keep_their_own_buffers(pkg_static, images, rt):
    """anytime() advances the groups of a static batch in lockstep: each walk needs buffers of its
    own, or the second group's chunk overwrites what the first group's next segment reads."""
    with mesc.load(pkg_static) as ref, _stream_pipe(pkg_static) as test:
        assert ref.static_batch == 1
        for a, b in zip(ref.anytime(images[:3]), test.anytime(images[:3])):
            _same(a, b)
        _same(ref(images[:3]), test(images[:3]))


def test_stream_path_uploads_uint8_as_it_is_and_runs_the_entry(pkg_graph, rt):
    """A uint8 call uploads its N x H x W x C bytes (a quarter of the float batch's) into a fixed
    buffer, the entry session normalises on the device; the same images normalised on the host
    upload four times the bytes and skip the entry. Same results."""
    u8 = np.random.default_rng(4).integers(0, 256, (2, 32, 64, 3), dtype=np.uint8)
    counts = collections.Counter()
    with mesc.load(pkg_graph) as ref, _stream_pipe(pkg_graph, counts) as test:
        floats = test.host_normalize(u8)
        _same(ref(u8), test(u8))
        _same(test(floats), test(u8))
        for x in (u8, floats):
            test(x)
            rt.reset()
            counts.clear()
            ran = []
            real = test.runner.run
            test.runner.run = lambda seg, feeds, out: ran.append(seg.name) or real(seg, feeds, out)
            test(x)
            del test.runner.run
            uploads = [c for c in rt.copies if c[0] == cuda.HOST_TO_DEVICE]
            assert [c[3] for c in uploads] == [x.nbytes] and counts["ortvalue_alloc"] == 0
            assert (ran[0] == "entry") == (x.dtype == np.uint8) and "entry" not in ran[1:]
        assert floats.nbytes == 4 * u8.nbytes
