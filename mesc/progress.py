"""Progress of long phases: a tqdm bar on a terminal, one plain line in a log.

A bar redraws itself with carriage returns, which a log file or CI output keeps as one
unreadable line per refresh; so where stderr is not a terminal a phase announces itself in a
single line and stays silent until it ends.
"""

from __future__ import annotations

import sys


class _Silent:
    """The interface of the tqdm calls mesc makes, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Line(_Silent):
    def __init__(self, stream, desc: str, total: int | None, unit: str):
        stream.write(f"{desc} ({total} {unit})\n" if total is not None else f"{desc}\n")
        stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(total: int | None, desc: str, unit: str = "it", show: bool = True, stream=None):
    """A progress bar of ``total`` steps (``update``, ``set_postfix``, ``close``; a context
    manager): tqdm where ``stream`` (default: stderr) is a terminal, else one line
    ``"<desc> (<total> <unit>)"``; nothing when ``show`` is false."""
    if not show:
        return _Silent()
    stream = stream if stream is not None else sys.stderr
    if not _is_terminal(stream):
        return _Line(stream, desc, total, unit)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream)


def iterate(items, desc: str, unit: str = "it", show: bool = True, stream=None):
    """``items`` with progress: each one passed on as it is taken, the bar (or the one line)
    as :func:`bar` draws it."""
    items = list(items)
    with bar(len(items), desc, unit, show, stream) as b:
        for item in items:
            yield item
            b.update(1)
