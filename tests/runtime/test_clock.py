"""The segment clock without a GPU: host timing with its synchronisation, CUDA events against a
recording stand-in for the CUDA runtime (pure bookkeeping: which events are recorded where and
read back), and which clock a runner gets."""

from types import SimpleNamespace

import pytest

from mesc.runtime import clock, cuda
from mesc.runtime.clock import CudaEventClock, HostClock, SegmentEvents, segment_clock
from mesc.runtime.devices import Device
from mesc.runtime.errors import DeviceError


class FakeRuntime:
    """The adapter interface of :mod:`mesc.runtime.cuda`; an event's time is its creation number."""

    source = "fake"

    def __init__(self):
        self.calls, self.next = [], 1

    def event_create(self):
        ev, self.next = self.next, self.next + 1
        return ev

    def event_record(self, ev, stream):
        self.calls.append(("record", ev, stream))

    def event_synchronize(self, ev):
        self.calls.append(("sync", ev))

    def event_elapsed_ms(self, start, end):
        return float(end - start)

    def event_destroy(self, ev):
        self.calls.append(("destroy", ev))


@pytest.fixture
def rt(monkeypatch):
    fake = FakeRuntime()
    monkeypatch.setattr(cuda, "_RUNTIME", fake)
    return fake


def test_events_bracket_each_segment_and_are_read_once(rt):
    ev = SegmentEvents()
    for name in ("chunk0", "head0"):
        ev.record(name, False, 7)
        ev.record(name, True, 7)
    assert [c[2] for c in rt.calls if c[0] == "record"] == [7, 7, 7, 7]
    assert ev.elapsed() == {"chunk0": 1.0, "head0": 1.0}
    assert ev.elapsed() == {}  # read once
    ev.record("chunk0", False, 7)  # events are reused, not created per run
    ev.record("chunk0", True, 7)
    assert rt.next == 5 and ev.elapsed() == {"chunk0": 1.0}
    ev.close()
    assert sorted(c[1] for c in rt.calls if c[0] == "destroy") == [1, 2, 3, 4]


def test_event_clock_times_the_stream_and_frees_its_events(rt):
    c = CudaEventClock(9)
    token = c.start()
    assert c.stop(token) == 1.0
    assert [x for x in rt.calls if x[0] == "record"] == [("record", 1, 9), ("record", 2, 9)]
    assert ("sync", 2) in rt.calls  # waits for the end event, not the whole device
    assert sorted(x[1] for x in rt.calls if x[0] == "destroy") == [1, 2]


def test_host_clock_synchronises_at_both_ends(monkeypatch):
    synced, ticks = [], iter([10.0, 10.25])
    monkeypatch.setattr(clock.time, "perf_counter", lambda: next(ticks))
    c = HostClock(lambda: synced.append(1))
    assert c.stop(c.start()) == 250.0 and synced == [1, 1]


def _runner(device, stream=True):
    return SimpleNamespace(device=device, stream=SimpleNamespace(ptr=5, synchronize=lambda: None) if stream else None)


def test_segment_clock_picks_events_on_a_cuda_stream_only(rt):
    assert segment_clock(_runner(Device("cuda", 0))).name == "cuda-events"
    assert segment_clock(_runner(Device("cpu"))).name == "host"
    assert segment_clock(_runner(Device("cuda", 0), stream=False)).name == "host"


def test_segment_clock_without_a_cuda_runtime_synchronises_on_the_host(monkeypatch):
    def missing():
        raise DeviceError("no CUDA runtime found")

    monkeypatch.setattr(cuda, "runtime", missing)
    c = segment_clock(_runner(Device("cuda", 0)))
    assert c.name == "host" and c.sync is not None
