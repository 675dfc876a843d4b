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
