"""The TensorRT runner's per-segment CUDA events, against a recording stand-in for libcudart
(pure bookkeeping: which events are recorded where and read back)."""

from mesc.runtime.backends.trt.runner import _SegmentEvents


class _Lib:
    def __init__(self):
        self.calls, self.next = [], 1

    def cudaEventCreate(self, ref):
        ref._obj.value, self.next = self.next, self.next + 1
        return 0

    def cudaEventRecord(self, ev, stream):
        self.calls.append(("record", ev.value, stream.value))
        return 0

    def cudaEventSynchronize(self, ev):
        return 0

    def cudaEventElapsedTime(self, ref, start, end):
        ref._obj.value = float(end.value - start.value)
        return 0

    def cudaEventDestroy(self, ev):
        self.calls.append(("destroy", ev.value))
        return 0


def test_events_bracket_each_segment_and_are_read_once():
    lib = _Lib()
    ev = _SegmentEvents(lib)
    for name in ("chunk0", "head0"):
        ev.record(name, False, 7)
        ev.record(name, True, 7)
    assert [c[2] for c in lib.calls] == [7, 7, 7, 7]
    assert ev.elapsed() == {"chunk0": 1.0, "head0": 1.0}
    assert ev.elapsed() == {}  # read once
    ev.record("chunk0", False, 7)  # events are reused, not created per run
    ev.record("chunk0", True, 7)
    assert lib.next == 5 and ev.elapsed() == {"chunk0": 1.0}
    ev.close()
    assert sorted(c[1] for c in lib.calls if c[0] == "destroy") == [1, 2, 3, 4]
