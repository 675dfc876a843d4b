"""The ORT CPU pipeline against the eager model and the numpy reference policy."""

import warnings

import numpy as np
import pytest

import mesc
from mesc.errors import MescError
from mesc.policy import edge_band_of
from mesc.policy import mess_confidence
from mesc.runtime import InputError

TH_PIX = 0.5


def _eager(model, x):
    import torch

    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(x))]


def _spread_thresholds(pipe, model, x):
    """th_img per exit at the widest gap between the remaining images' reference confidences,
    so each exit is taken by some image and float noise cannot flip a decision. Returns the
    expected exit per image and the reference confidences."""
    outs = _eager(model, x)
    conf = []
    for ex, logits in zip(pipe.pkg.exits, outs):
        p = ex.policy
        conf.append(mess_confidence(logits, TH_PIX, p["confidence"], p["edge"], p["stride"], edge_band_of(p)))
    remaining = np.arange(len(x))
    expected = np.full(len(x), len(outs) - 1)
    for k in range(len(outs) - 1):
        v = np.sort(conf[k][remaining])
        assert len(v) > 1, f"exit {k}: no image left to spread"
        i = int(np.argmax(np.diff(v)))
        assert v[i + 1] - v[i] > 0.05, f"exit {k}: confidences {v} do not spread"
        th = float(v[i] + v[i + 1]) / 2
        pipe.set_thresholds(k, th_pix=TH_PIX, th_img=th)
        leaving = remaining[conf[k][remaining] >= th]
        expected[leaving] = k
        remaining = remaining[conf[k][remaining] < th]
    pipe.set_thresholds(len(outs) - 1, th_pix=TH_PIX)
    assert set(expected) == set(range(len(outs))), f"not every exit is taken: {expected}"
    return expected, outs, conf


def _float_path(segments) -> list:
    """The names of ``segments`` a float batch runs: all but the entry segment (uint8 input only)."""
    return [s.name for s in segments if s.kind != "entry"]


def test_input_dependent_matches_eager_and_reference(pkg, model, images):
    with mesc.load(pkg) as pipe:
        expected, outs, conf = _spread_thresholds(pipe, model, images)
        results = pipe(images)
    for i, r in enumerate(results):
        assert r.exit_index == expected[i], f"image {i}"
        assert r.exit == pipe.pkg.exits[expected[i]].name
        assert r.labels.dtype == np.int32 and r.labels.shape == images.shape[2:]
        np.testing.assert_array_equal(r.labels, outs[expected[i]][i].argmax(0))
        # a confidence for every exit visited, and only those
        assert list(r.confidences) == [e.name for e in pipe.pkg.exits[: expected[i] + 1]]
        for k, name in enumerate(r.confidences):
            assert r.confidences[name] == pytest.approx(conf[k][i], abs=2 / images[0, 0].size)
        head = pipe.pkg.segment(pipe.pkg.exits[expected[i]].segment)
        assert list(r.timings["segments"]) == _float_path(pipe.pkg.segments[: pipe.pkg.segments.index(head) + 1])
        assert r.timings["total_ms"] > 0


def test_mixed_batch_equals_one_by_one(pkg, model, images):
    with mesc.load(pkg) as pipe:
        expected, _, _ = _spread_thresholds(pipe, model, images)
        order = np.array([7, 0, 4, 2, 6, 1, 3, 5])  # exits interleaved within the batch
        batch = pipe(images[order])
        for j, i in enumerate(order):
            single = pipe(images[i:i + 1])[0]
            assert batch[j].exit == single.exit == pipe.pkg.exits[expected[i]].name
            np.testing.assert_array_equal(batch[j].labels, single.labels)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_budgeted_equals_models_exit(pkg, model, images, k):
    outs = _eager(model, images)
    with mesc.load(pkg) as pipe:
        results = pipe(images, exit=k)
        ran = set(results[0].timings["segments"])
        assert ran == set(_float_path(pipe.pkg.segments_until(k)))
        by_name = pipe(images[:2], exit=pipe.pkg.exits[k].name)
    for i, r in enumerate(results):
        assert r.exit_index == k
        np.testing.assert_array_equal(r.labels, outs[k][i].argmax(0))
    np.testing.assert_array_equal(by_name[1].labels, results[1].labels)


def test_anytime_yields_every_exit_in_order(pkg, model, images):
    outs = _eager(model, images)
    with mesc.load(pkg) as pipe:
        steps = list(pipe.anytime(images[:3]))
        assert [s[0].exit for s in steps] == pipe.exit_names
        assert [s[0].final for s in steps] == [False, False, True]
        for k, step in enumerate(steps):
            for i, r in enumerate(step):
                np.testing.assert_array_equal(r.labels, outs[k][i].argmax(0))
        # a deadline already passed: the first prediction is the final one, nothing else runs
        first = list(pipe.anytime(images[:3], deadline=0.0))
        assert len(first) == 1 and first[0][0].final and first[0][0].exit == "exit0"
        assert set(first[0][0].timings["segments"]) == {"chunk0", "head0"}
        one = list(pipe.anytime(np.ascontiguousarray(images[0])[None]))
        assert len(one) == 3


def test_anytime_starts_no_segment_the_recorded_latencies_say_cannot_finish(pkg, images):
    with mesc.load(pkg) as pipe:
        names = [s.name for s in pipe.pkg.segments]
        slow_last = {n: (1e6 if n == pipe.pkg.exits[-1].segment else 0.0) for n in names}
        steps = list(pipe.anytime(images[:2], deadline=30.0, latency=slow_last))
        # exit2's head would take 1000 s: exit1's prediction is final, exit2's head never runs
        assert [s[0].exit for s in steps] == ["exit0", "exit1"] and steps[-1][0].final
        assert pipe.pkg.exits[-1].segment not in steps[-1][0].timings["segments"]
        fast = {n: 0.0 for n in names}
        assert len(list(pipe.anytime(images[:2], deadline=30.0, latency=fast))) == 3
        slow_all = {n: 1e6 for n in names}
        first = list(pipe.anytime(images[:2], deadline=30.0, latency=slow_all))
        assert len(first) == 1 and first[0][0].final  # the first exit always runs
        assert pipe.deadline_stats == {"calls": 3, "missed": 0}
        # a deadline already passed: the one prediction made is late
        list(pipe.anytime(images[:2], deadline=0.0, latency=fast))
        assert pipe.deadline_stats == {"calls": 4, "missed": 1}


def test_anytime_reads_recorded_latencies_and_refuses_bad_requests(pkg, images):
    with mesc.load(pkg) as pipe:
        assert pipe.segment_latency() is None  # nothing recorded: stop after the deadline instead
        assert len(list(pipe.anytime(images[:1], deadline=60.0))) == 3
        pipe.pkg.manifest["latency"] = {"onnxruntime/cpu": {s.name: 1e6 for s in pipe.pkg.segments}}
        pipe.pkg.manifest_edited()
        assert len(list(pipe.anytime(images[:1], deadline=60.0))) == 1
        with pytest.raises(InputError, match="no latencies recorded under 'tensorrt/cuda:0'.*onnxruntime/cpu"):
            pipe.anytime(images[:1], deadline=1.0, latency="tensorrt/cuda:0")
        for bad in (-1, "soon", True, float("nan")):
            with pytest.raises(InputError, match="deadline must be a number of seconds"):
                pipe.anytime(images[:1], deadline=bad)


def test_thresholds_change_without_rebuilding(pkg, images):
    with mesc.load(pkg) as pipe:
        sessions = dict(pipe.runner.sessions)
        pipe.set_thresholds("exit0", th_pix=0.0, th_img=0.0)  # everything is confident
        assert {r.exit for r in pipe(images)} == {"exit0"}
        pipe.set_thresholds("exit0", th_pix=1.0, th_img=1.0)
        pipe.set_thresholds("exit1", th_pix=1.0, th_img=1.0)
        assert {r.exit for r in pipe(images)} == {"exit2"}
        assert pipe.thresholds("exit1") == {"th_pix": 1.0, "th_img": 1.0}
        assert pipe.runner.sessions == sessions
        with pytest.raises(MescError, match="th_img"):
            pipe.set_thresholds(0, th_img=1.5)
        with pytest.raises(MescError, match="no exit named"):
            pipe.set_thresholds("exit9", th_img=0.5)


class _Recorder:
    """Wraps a runner and records what crosses to the host, by tensor name and rows."""

    def __init__(self, runner):
        self.inner, self.downloads, self.names = runner, [], {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, segment, feeds, outputs):
        out = self.inner.run(segment, feeds, outputs)
        self.names.update({id(h): n for n, h in out.items()})
        return out

    def take(self, handle, rows):
        out = self.inner.take(handle, rows)
        self.names[id(out)] = self.names.get(id(handle), "?")
        return out

    def download(self, handle):
        arr = self.inner.download(handle)
        self.downloads.append((self.names.get(id(handle), "?"), arr.shape[0]))
        return arr

    def fetch(self, handle):  # a queued read crosses too
        self.downloads.append((self.names.get(id(handle), "?"), self.inner.shape(handle)[0]))
        return self.inner.fetch(handle)


def test_only_confidences_and_leaving_labels_cross_to_host(pkg_graph, model, images):
    """The copy decisions the CUDA path shares: per exit the confidences of the images still in
    the batch, the labels of those that leave, never the logits or the features."""
    with mesc.load(pkg_graph) as pipe:
        expected, _, _ = _spread_thresholds(pipe, model, images)
        rec = pipe.runner = _Recorder(pipe.runner)
        pipe._th_handles.clear()
        pipe(images)
    left = [int((expected == k).sum()) for k in range(3)]
    in_batch = [8, 8 - left[0], 8 - left[0] - left[1]]
    assert rec.downloads == [
        ("exit0_confidence", in_batch[0]), ("exit0_labels", left[0]),
        ("exit1_confidence", in_batch[1]), ("exit1_labels", left[1]),
        ("exit2_confidence", in_batch[2]), ("exit2_labels", left[2]),
    ]


def test_logits_only_when_asked(pkg_graph, images):
    with mesc.load(pkg_graph) as pipe:
        assert all(r.logits is None for r in pipe(images[:2], exit=1))
        r = pipe(images[:2], exit=1, logits=True)
        assert r[0].logits.shape == (4, *images.shape[2:])
        assert all("logits" not in n for s in pipe.plan(None) for n in s.fetch)


def test_static_batch_warns_once_and_runs_image_by_image(pkg_static, pkg_host, model, images):
    with mesc.load(pkg_host) as dyn:
        expected, _, _ = _spread_thresholds(dyn, model, images)
        want = dyn(images)
    with mesc.load(pkg_static) as pipe:
        for k in range(3):
            pipe.set_thresholds(k, **dyn.thresholds(k))
        with pytest.warns(UserWarning, match="static batch of 1"):
            got = pipe(images)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pipe(images[:2])
            steps = list(pipe.anytime(images[:3]))
    assert [r.exit for r in got] == [r.exit for r in want]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.labels, b.labels)
    assert len(steps) == 3 and all(len(s) == 3 for s in steps)


def test_single_uint8_image_is_normalised(pkg_host):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    with mesc.load(pkg_host) as pipe:
        norm = pipe.pkg.input.normalization
        x = ((img / np.float32(norm["scale"]) - np.array(norm["mean"], np.float32))
             / np.array(norm["std"], np.float32)).transpose(2, 0, 1)[None].astype(np.float32)
        single = pipe(img, exit=2)
        assert single.labels.shape == (32, 64)
        np.testing.assert_array_equal(single.labels, pipe(x, exit=2)[0].labels)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((2, 3, 32, 32), np.float32), r"32 x 64 \(H x W\) images, got 32 x 32"),
    (np.zeros((2, 1, 32, 64), np.float32), "takes 3 channels, got 1"),
    (np.zeros((2, 3, 32, 64), np.float64), "must be float32"),
    (np.zeros((32, 64, 4), np.uint8), "takes 3 channels, got 4"),
    (np.zeros((64, 32, 3), np.uint8), r"got 64 x 32"),
    (np.zeros((3, 32, 64), np.float32), "expected one uint8 image"),
    (np.zeros((0, 3, 32, 64), np.float32), "empty"),
    ([], "no images"),
    ("image.png", "numpy array"),
])
def test_bad_inputs_are_named(pkg_host, bad, msg):
    with mesc.load(pkg_host) as pipe:
        with pytest.raises(InputError, match=msg):
            pipe(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_batches_are_refused(pkg_host, value):
    x = np.zeros((3, 3, 32, 64), np.float32)
    x[1, 2, 5, 7] = value
    with mesc.load(pkg_host) as pipe:
        with pytest.raises(InputError, match=r"holds NaN or infinite values \(image\(s\) \[1\] of 3\)"):
            pipe(x)
        with pytest.raises(InputError, match=r"images\[1\]: the float32 batch holds NaN"):
            pipe([x[:1], x[1:2]])
        with pytest.raises(InputError, match="NaN or infinite"):
            pipe.anytime(x)  # refused at the call, not at the first next()


@pytest.mark.parametrize("kw, shown", [
    ({"th_img": "high"}, "'high'"), ({"th_pix": True}, "True"), ({"th_img": float("nan")}, "nan"),
    ({"th_pix": -0.1}, "-0.1"), ({"th_img": np.float64(2.0)}, "2.0"),
])
def test_thresholds_must_be_real_numbers_in_0_1(pkg_host, kw, shown):
    (key, _), = kw.items()
    with mesc.load(pkg_host) as pipe:
        before = pipe.thresholds("exit1")
        with pytest.raises(InputError, match=rf"exit 'exit1': {key} must be a real number in \[0, 1\], got .*{shown}"):
            pipe.set_thresholds(1, **kw)
        assert pipe.thresholds("exit1") == before
        pipe.set_thresholds("exit1", th_pix=np.float32(0.25), th_img=1)
        assert pipe.thresholds("exit1") == {"th_pix": 0.25, "th_img": 1.0}


def test_a_closed_pipeline_says_so(pkg_host, images):
    pipe = mesc.load(pkg_host)
    pipe.close()
    pipe.close()  # closing twice is harmless
    for use in (lambda: pipe(images), lambda: pipe.anytime(images), lambda: pipe.tensors(images)):
        with pytest.raises(MescError, match="the pipeline is closed"):
            use()
    with mesc.load(pkg_host) as pipe:
        pass
    with pytest.raises(MescError, match="the pipeline is closed"):
        pipe(images, exit=0)


def test_disabled_exit_is_skipped_entirely(pkg, model, images):
    with mesc.load(pkg) as pipe:
        expected, outs, _ = _spread_thresholds(pipe, model, images)
        head1 = pipe.pkg.exits[1].segment
        pipe.set_enabled(1, False)
        results = pipe(images)
        for i, r in enumerate(results):
            assert r.exit_index != 1
            assert pipe.pkg.exits[1].name not in r.confidences
            assert head1 not in r.timings["segments"], "a disabled exit's head must not run"
            if expected[i] == 0:
                assert r.exit_index == 0
        # images that used to leave at exit 1 now go on to the final exit
        moved = [i for i in range(len(images)) if expected[i] == 1]
        assert moved and all(results[i].exit_index == 2 for i in moved)
        np.testing.assert_array_equal(results[moved[0]].labels, outs[2][moved[0]].argmax(0))
        assert len(list(pipe.anytime(images))) == 2
        assert len(list(pipe.anytime(images, all_exits=True))) == 3
        with pytest.raises(MescError, match="final exit"):
            pipe.set_enabled(2, False)
        pipe.set_enabled(1, True)
        assert any(r.exit_index == 1 for r in pipe(images))


class _TickClock:
    """Every interval it times lasts 1 ms: shows which parts the caller's clock timed."""

    def start(self):
        return None

    def stop(self, token):
        return 1.0


def test_time_segments_times_every_segment_of_the_runtimes_own_walk(pkg, images):
    with mesc.load(pkg) as pipe:
        pipe.set_enabled(1, False)  # timed all the same: calibration may reconsider the exit
        ms = pipe.time_segments(images[:2], clock=_TickClock())
        names = _float_path(pipe.pkg.segments)
        assert set(ms) == set(names) | {f"decision:{k}" for k in pipe.exit_names}
        assert all(ms[n] == 1.0 for n in names)  # segments on the given clock
        assert all(ms[f"decision:{k}"] != 1.0 for k in pipe.exit_names)  # decisions on the host's

        head0 = pipe.pkg.exits[0].segment
        pipe.runner.segment_times = lambda: {head0: 7.5, "not-a-segment": 1.0}
        ms = pipe.time_segments(images[:2])
        assert ms[head0] == 7.5 and "not-a-segment" not in ms  # the device's figures win


def test_close_under_load_ends_calls_in_flight_cleanly(pkg_host, images):
    """close() while other threads are inside pipe(x): it waits for the calls in flight, and
    every call either returns its results or says the pipeline is closed, nothing else."""
    import threading

    pipe = mesc.load(pkg_host)
    errors, done, started = [], [], threading.Barrier(5)

    def hammer():
        started.wait()
        try:
            while True:
                res = pipe(images)
                assert len(res) == len(images)
                done.append(1)
        except MescError as err:
            if "the pipeline is closed" not in str(err):
                errors.append(err)
        except Exception as err:  # noqa: BLE001  (what the test guards against: KeyError and the like)
            errors.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    while len(done) < 4:  # calls are running
        pass
    pipe.close()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_an_anytime_generator_resumed_after_close_says_so(pkg_host, images):
    pipe = mesc.load(pkg_host)
    walk = pipe.anytime(images)
    next(walk)
    pipe.close()
    with pytest.raises(MescError, match="the pipeline is closed"):
        next(walk)


@pytest.mark.parametrize("args, kw, named", [
    ((None,), {}, r"mesc.load: path must be a package folder .*got None"),
    ((3,), {}, r"mesc.load: path must be a package folder .*got 3"),
    (("PKG",), {"treads": 2}, r"mesc.load: unknown argument 'treads'; did you mean 'threads'\?"),
    (("PKG",), {"backend": "onnxruntime", "dla_core": 0}, r"unknown argument 'dla_core'"),
    (("PKG",), {"threads": "2"}, r"mesc.load: threads must be a whole number >= 1 .*got '2'"),
    (("PKG",), {"threads": 0}, r"mesc.load: threads must be a whole number >= 1"),
    (("PKG",), {"spin": 1}, r"mesc.load: spin must be 'run', 'off' or 'on' \(True: 'on', False: 'off'\), got 1"),
    (("PKG",), {"spin": "fast"}, r"mesc.load: spin must be 'run', 'off' or 'on' .*got 'fast'"),
    (("PKG",), {"backend": 2}, r"mesc.load: backend must be one of auto, onnxruntime, tensorrt, got 2"),
    (("PKG",), {"device": 0}, r"mesc.load: device must be 'cpu', 'cuda' or 'cuda:N', got 0"),
    (("PKG",), {"precision": 16}, r"mesc.load: precision must be a name \(str\) or None, got 16"),
])
def test_load_names_a_bad_argument_before_reading_the_package(tmp_path, monkeypatch, args, kw, named):
    from mesc.package import Package

    def never(*a, **k):
        raise AssertionError("the package was read before the arguments were checked")

    monkeypatch.setattr(Package, "load", never)
    args = tuple(tmp_path / "pkg" if a == "PKG" else a for a in args)
    with pytest.raises(MescError, match=named):
        mesc.load(*args, **kw)
