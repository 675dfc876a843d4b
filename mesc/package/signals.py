"""SIGTERM as an exception, so ``timeout``, CI cancellation and ``docker stop`` clean up like
Ctrl-C: Python's default for SIGTERM kills the process without running ``finally`` blocks, which
leaves half-written staging directories behind."""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM.

    A KeyboardInterrupt subclass on purpose: it unwinds through the same ``except
    BaseException`` and ``finally`` blocks as SIGINT, and callers that already stop quietly on
    Ctrl-C do so here too.
    """


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous
    handler comes back afterwards. Outside the main thread signals cannot be handled, so it
    does nothing there. A handler someone else installed (not the default) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None) and previous is not _raise_terminated:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
