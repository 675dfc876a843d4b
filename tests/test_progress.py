"""mesc.progress: a bar on a terminal, a single plain line in a log, nothing when not asked."""

import io

from mesc.progress import bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream, show=True):
    with bar(5, "calibrate: run exits", "images", show=show, stream=stream) as b:
        for _ in range(5):
            b.update(1)
            b.set_postfix(loss="0.1")
    return stream.getvalue()


def test_a_log_gets_one_line_and_no_carriage_return():
    out = _run(io.StringIO())
    assert out == "calibrate: run exits (5 images)\n"
    assert "\r" not in out


def test_a_terminal_gets_a_bar():
    out = _run(_Terminal())
    assert "\r" in out and "calibrate: run exits" in out and "/5" in out


def test_nothing_when_not_asked():
    assert _run(_Terminal(), show=False) == "" and _run(io.StringIO(), show=False) == ""
