"""What torch prints while capturing or exporting: kept out of the terminal unless asked for,
and shown in a failure's message when it is short."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

# torch's output that still fits in a one-line error
_SHORT_DETAIL = 200


def detail(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return ""
    if len(text) <= _SHORT_DETAIL:
        return f" (torch: {text})"
    return " (run with --verbose for torch's output)"


@contextlib.contextmanager
def captured_output():
    """Collect what the process writes to stdout and stderr in the block, at the file
    descriptors, since torch's C++ side writes there directly; yields a function that returns
    the text so far."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)

            def read() -> str:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                sink.seek(0)
                return sink.read().decode(errors="replace")

            yield read
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
