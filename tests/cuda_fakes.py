"""Stand-ins for the CUDA runtime adapter of :mod:`mesc.runtime.cuda`, for tests without a GPU."""

import ctypes


class HostMemoryRuntime:
    """Device and pinned memory as host bytes, copies as memmove, streams as numbers: enough to
    check what is allocated, copied where and freed. ``calls`` records copies and frees."""

    source = "host memory (test)"

    def __init__(self):
        self.blocks, self.calls, self.streams = {}, [], 0

    def _alloc(self, n):
        buf = ctypes.create_string_buffer(n)
        self.blocks[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    malloc = malloc_host = _alloc

    def free(self, ptr):
        self.calls.append(("free", ptr))
        del self.blocks[ptr]

    free_host = free

    def memcpy(self, dst, src, n, kind):
        self.calls.append(("memcpy", kind))
        ctypes.memmove(dst, src, n)

    def memcpy_async(self, dst, src, n, kind, stream):
        self.calls.append(("memcpy_async", kind, stream))
        ctypes.memmove(dst, src, n)

    def stream_create(self):
        self.streams += 1
        return 100 + self.streams

    def stream_synchronize(self, stream):
        pass

    def stream_destroy(self, stream):
        pass


class RecordingRuntime(HostMemoryRuntime):
    """A fake CUDA runtime that counts what a call costs: ``count`` holds every call by kind
    (``malloc``, ``malloc_host``, ``upload``/``download``/``device_copy`` for async copies,
    ``sync`` for stream and event waits, ``capture``, ``launch``, ``kernel``), ``copies`` every
    async copy as (kind, dst, src, nbytes, stream). Work queued on a stream that is being captured
    is recorded into the graph instead of run, and :meth:`graph_launch` replays it, as CUDA does;
    fake kernels queue themselves with :meth:`enqueue`."""

    _KINDS = {1: "upload", 2: "download", 3: "device_copy"}

    def __init__(self):
        super().__init__()
        import collections

        self.count = collections.Counter()
        self.copies = []
        self.capturing = {}  # stream -> work recorded so far
        self.graphs = {}
        self.events = 0

    def reset(self):
        self.count.clear()
        self.copies = []

    def _alloc(self, n):
        return super()._alloc(n)

    def malloc(self, n):
        self.count["malloc"] += 1
        return self._alloc(n)

    def malloc_host(self, n):
        self.count["malloc_host"] += 1
        return self._alloc(n)

    def enqueue(self, stream, work, what="kernel"):
        """Run ``work()`` now, or record it where ``stream`` is being captured."""
        if stream in self.capturing:
            self.capturing[stream].append(work)
        else:
            self.count[what] += 1
            work()

    def memcpy_async(self, dst, src, n, kind, stream):
        self.copies.append((kind, dst, src, n, stream))
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, n), self._KINDS[kind])

    def memcpy(self, dst, src, n, kind):
        self.count["blocking_copy"] += 1
        super().memcpy(dst, src, n, kind)

    def stream_synchronize(self, stream):
        assert stream not in self.capturing, "a stream being captured cannot be synchronised"
        self.count["sync"] += 1

    def stream_wait_event(self, stream, event):
        self.count["stream_wait"] += 1

    # events: numbers; elapsed time is zero
    def event_create(self):
        self.count["event_create"] += 1
        self.events += 1
        return self.events

    def event_record(self, event, stream):
        self.count["event_record"] += 1

    def event_synchronize(self, event):
        self.count["sync"] += 1

    def event_elapsed_ms(self, start, end):
        return 0.0

    def event_destroy(self, event):
        pass

    # graphs
    def begin_capture(self, stream):
        assert stream not in self.capturing
        self.capturing[stream] = []

    def end_capture(self, stream):
        work = self.capturing.pop(stream)
        self.graphs[id(work)] = work
        return id(work)

    def graph_instantiate(self, graph):
        self.count["capture"] += 1
        return ("exec", graph)

    def graph_launch(self, graph_exec, stream):
        self.count["launch"] += 1
        for work in self.graphs[graph_exec[1]]:
            work()

    def graph_destroy(self, graph):
        pass

    def graph_exec_destroy(self, graph_exec):
        self.graphs.pop(graph_exec[1], None)
