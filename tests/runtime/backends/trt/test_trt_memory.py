"""The TensorRT runner without a GPU: its tensors, row gather, fixed buffers, reads, CUDA graphs and
the count of what a warm call costs, on a fake CUDA runtime that records every call
(:class:`cuda_fakes.RecordingRuntime`) and fake engines that run each segment's ONNX graph
(:mod:`trt_fakes`)."""

import numpy as np
import pytest

import mesc
from mesc.package import Package
from mesc.runtime import cuda
from mesc.runtime.backends.trt.runner import TrtRunner
from mesc.runtime.devices import Device
from mesc.runtime.pipeline import Pipeline
from cuda_fakes import RecordingRuntime
from trt_fakes import fake_trt_runner


@pytest.fixture
def rt(monkeypatch):
    fake = RecordingRuntime()
    monkeypatch.setattr(cuda, "_RUNTIME", fake)
    return fake


@pytest.fixture
def runner(rt):
    r = TrtRunner.__new__(TrtRunner)  # no TensorRT needed for the tensors
    r.device = Device("cuda", 0)
    r._open_memory(cuda.Stream())
    yield r
    r._close_memory()


def test_upload_take_download_round_trip(runner, rt):
    x = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    h = runner.upload(x)
    assert runner.shape(h) == (4, 2, 3)
    np.testing.assert_array_equal(runner.download(h), x)
    rows = [0, 2, 3]  # two runs of consecutive rows: two device-to-device copies
    np.testing.assert_array_equal(runner.download(runner.take(h, rows)), x[rows])
    assert rt.count["device_copy"] == 2
    assert all(c[4] == runner.stream.ptr for c in rt.copies)  # everything on the runner's stream


@pytest.mark.parametrize("rows", [[0, 2], [1, 3, 5], [0, 2, 3, 5], [0, 1, 2, 3, 4, 5], [5], [0, 1, 3, 4]])
def test_take_copies_exactly_each_run_of_consecutive_rows(runner, rt, rows):
    """Every copy of the gather, recorded: rows two apart are two copies, never one, and each copy
    moves exactly its rows to their place (a merged or shifted run fails here)."""
    x = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)
    h = runner.upload(x)
    rt.reset()
    out = runner.take(h, rows)
    row = 5 * 4
    runs, start = [], 0
    for j in range(1, len(rows) + 1):
        if j == len(rows) or rows[j] != rows[j - 1] + 1:
            runs.append((start, rows[start], j - start))
            start = j
    expected = [(cuda.DEVICE_TO_DEVICE, out.ptr + dst * row, h.ptr + src * row, n * row, runner.stream.ptr)
                for dst, src, n in runs]
    assert rt.copies == expected
    np.testing.assert_array_equal(runner.download(out), x[rows])


def test_buffers_are_fixed_per_slot_and_shape(runner, rt):
    x = np.zeros((2, 3), np.float32)
    first = runner.upload(x)
    assert runner.upload(x + 1) is first and rt.count["malloc"] == 1  # same shape: same buffer, in place
    assert runner.upload(x, slot="th_pix:exit0").ptr != first.ptr  # another slot: its own buffer
    h = runner.upload(np.arange(6, dtype=np.float32).reshape(2, 3))
    g1 = runner.take(h, [1])
    assert runner.take(h, [0]) is g1  # fixed per (source, row count)
    runner.download(runner.take(runner.upload(x), [0]))  # the first read of a source pins its buffer
    allocated = rt.count["malloc"] + rt.count["malloc_host"]
    for _ in range(3):
        runner.download(runner.take(runner.upload(x), [0]))
    assert rt.count["malloc"] + rt.count["malloc_host"] == allocated


def test_reads_queued_together_wait_once(runner, rt):
    a, b = runner.upload(np.ones(3, np.float32)), runner.upload(np.zeros((1, 2), np.int32), slot="b")
    rt.reset()
    ra, rb = runner.fetch(a), runner.fetch(b)
    assert rt.count["sync"] == 0
    np.testing.assert_array_equal(rb.get(), np.zeros((1, 2), np.int32))
    np.testing.assert_array_equal(ra.get(), np.ones(3, np.float32))
    assert rt.count["sync"] == 1 and rt.count["download"] == 2


# whole pipelines on the fake engines ---------------------------------------------------------------

def _pipes(pkg_dir, **kw):
    pkg = Package.load(pkg_dir)
    return mesc.load(pkg_dir), Pipeline(pkg, fake_trt_runner(pkg, **kw))


def _same(ref, test):
    assert [r.exit for r in ref] == [r.exit for r in test]
    for a, b in zip(ref, test):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.confidences.keys() == b.confidences.keys()
        for k in a.confidences:
            assert (a.confidences[k] is None) == (b.confidences[k] is None)
            if a.confidences[k] is not None:
                assert abs(a.confidences[k] - b.confidences[k]) <= 1e-6


def _spread(pipes, images):
    """th_img per exit at the widest gap of the remaining images' confidences, so that every exit
    is taken and the batch compacts."""
    ref = pipes[0]
    conf = [np.array([r.confidences[ex] for r in step]) for ex, step in zip(ref.exit_names, ref.anytime(images))]
    remaining = np.arange(len(images))
    for k in range(len(conf) - 1):
        v = np.sort(conf[k][remaining])
        i = int(np.argmax(np.diff(v[:-1]))) if len(v) > 2 else 0  # leave someone for the later exits
        th = float(v[i] + v[i + 1]) / 2
        for p in pipes:
            p.set_thresholds(k, th_img=th)
        remaining = remaining[conf[k][remaining] < th]


@pytest.mark.parametrize("graphs", [True, False])
def test_fake_engines_give_onnxruntime_results(pkg_graph, images, rt, graphs):
    ref, test = _pipes(pkg_graph, graphs=graphs)
    _spread((ref, test), images)
    for _ in range(3):  # uncaptured, captured, replayed
        _same(ref(images), test(images))
        _same([ref(im[None])[0] for im in images[:3]], [test(im[None])[0] for im in images[:3]])
        _same(ref(images, exit=1), test(images, exit=1))
    assert set(r.exit for r in ref(images)) == set(ref.exit_names)  # the batches compacted
    assert (rt.count["launch"] > 0) == graphs and not test.runner.graph_fallbacks


def test_a_warm_call_allocates_nothing_uploads_once_and_launches_one_graph_per_segment(pkg_graph, images, rt):
    """After warm-up, one image through every exit: 0 allocations, 1 upload, 1 graph launch per
    segment, no kernel outside a graph, no address or shape set on a context, and one wait per
    exit reached (the last exit's confidence is read with its labels)."""
    _, pipe = _pipes(pkg_graph)
    for k in range(len(pipe.exit_names) - 1):
        pipe.set_thresholds(k, th_img=1.0)  # nobody leaves early: every exit is reached
    x = images[:1]
    for _ in range(3):
        pipe(x)
    rt.reset()
    pipe.runner.counts.clear()
    r = pipe(x)[0]
    # a float batch starts at the first chunk: the entry segment (uint8 input only) does not run
    segments = [s for s in pipe.pkg.segments if s.kind not in ("tail", "entry")]
    assert r.exit == pipe.exit_names[-1]
    assert rt.count["malloc"] == rt.count["malloc_host"] == 0
    assert rt.count["upload"] == 1
    assert rt.count["launch"] == len(segments) and rt.count["kernel"] == 0 and rt.count["capture"] == 0
    assert rt.count["sync"] == len(pipe.exit_names)
    assert rt.count["blocking_copy"] == 0 and rt.count["event_record"] == 0
    assert pipe.runner.counts == {}  # nothing asked of or set on a context


def test_budgeted_call_waits_once(pkg_graph, images, rt):
    _, pipe = _pipes(pkg_graph)
    for _ in range(3):
        pipe(images[:1], exit=1)
    rt.reset()
    r = pipe(images[:1], exit=1)[0]
    assert r.exit == pipe.exit_names[1] and r.confidences[r.exit] is not None
    assert rt.count["sync"] == 1  # labels and confidence in one read


def test_a_segment_that_cannot_be_captured_runs_uncaptured_and_is_named(pkg_graph, images, rt):
    pkg = Package.load(pkg_graph)
    seg = pkg.segments[1].name
    ref, test = _pipes(pkg_graph, fail_capture=(seg,))
    with pytest.warns(UserWarning, match=f"segment '{seg}' runs without a CUDA graph"):
        for _ in range(3):
            _same(ref(images), test(images))
    assert list(test.runner.graph_fallbacks) == [seg]
    assert not rt.capturing  # the failed capture left the stream out of capture mode


def test_new_shapes_drop_a_segments_graph_and_new_addresses_recapture(pkg_graph, images, rt):
    ref, test = _pipes(pkg_graph)
    runner = test.runner
    for _ in range(2):
        test(images[:2])
    name = next(s.name for s in test.pkg.segments if s.kind != "entry")  # float input skips the entry
    key = next(k for k in runner.bindings if k[0] == name)
    assert runner.bindings[key].graph is not None
    test(images[:3])  # another batch size: the context changes shapes, the old graph goes
    assert runner.bindings[key].graph is None
    _same(ref(images[:2]), test(images[:2]))



def test_anytime_walks_of_a_static_batch_keep_their_own_buffers(pkg_static, images, rt):
    ref, test = _pipes(pkg_static)
    for _ in range(3):  # uncaptured, captured, replayed: each lane its own buffers and graphs
        for a, b in zip(ref.anytime(images[:3]), test.anytime(images[:3])):
            _same(a, b)
    assert {k[2] for k in test.runner.bindings} == {0, 1, 2}


def test_a_new_th_pix_is_written_in_place(pkg_graph, images, rt):
    """Thresholds change values, not buffers: each head (and its CUDA graph) keeps its addresses.
    Budgeted calls keep the full batch, so no shape changes."""
    ref, test = _pipes(pkg_graph)
    last = len(test.exit_names) - 1
    for _ in range(3):
        test(images, exit=last)
        test(images, exit=0)
    before = {k: h.ptr for k, h in test._th_handles.items()}
    rt.reset()
    for p in (ref, test):
        p.set_thresholds(0, th_pix=0.8)
    _same(ref(images, exit=last), test(images, exit=last))
    _same(ref(images, exit=0), test(images, exit=0))
    assert {k: h.ptr for k, h in test._th_handles.items()} == before
    assert rt.count["malloc"] == rt.count["capture"] == 0 and rt.count["launch"] > 0


def test_a_uint8_call_uploads_a_quarter_of_the_float_bytes_and_runs_the_entry(pkg_graph, rt):
    """uint8 N x H x W x C goes up as it is (1 byte a value) and the entry engine normalises it on
    the device; the same images normalised on the host go up as float32 (4 bytes) and skip the
    entry. Same results either way, on the fake engines as on ONNX Runtime."""
    ref, pipe = _pipes(pkg_graph)
    u8 = np.random.default_rng(4).integers(0, 256, (2, 32, 64, 3), dtype=np.uint8)
    floats = pipe.host_normalize(u8)
    for p in (ref, pipe):
        for k in range(len(pipe.exit_names) - 1):
            p.set_thresholds(k, th_img=1.0)  # nobody leaves early: every segment runs at one batch size
    _same(ref(u8), pipe(u8))
    _same(pipe(floats), pipe(u8))
    segments = [s.name for s in pipe.pkg.segments if s.kind != "tail"]
    for x, launched in ((u8, segments), (floats, segments[1:])):
        # the first chunk reads the entry's output or the uploaded floats: another address, so a
        # switch of input type captures its graph again (warm-up), then it replays
        for _ in range(3):
            pipe(x)
        rt.reset()
        pipe(x)
        uploads = [c for c in rt.copies if c[0] == cuda.HOST_TO_DEVICE]
        assert [c[3] for c in uploads] == [x.nbytes]  # one upload: the batch, as handed over
        assert rt.count["launch"] == len(launched) and rt.count["kernel"] == 0  # one graph a segment
    assert floats.nbytes == 4 * u8.nbytes
    assert segments[0] == "entry"
