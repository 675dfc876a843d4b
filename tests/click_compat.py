"""Click 8.2's test results on click 8.1, the last click for Python 3.8.

From 8.2 a ``CliRunner`` result always has ``stderr`` apart and ``output`` is what a user sees
(stdout and stderr). 8.1 mixes stderr into stdout unless told ``mix_stderr=False``, and then
leaves it out of ``output``. The tests read ``stderr`` and ``output`` as 8.2 gives them; on 8.1
this runner gives them the same (stdout followed by stderr: their order between the two is lost).
"""

from __future__ import annotations

import inspect

import click.testing


class _Result(click.testing.Result):
    @property
    def output(self) -> str:
        return self.stdout + (self.stderr if self.stderr_bytes is not None else "")


class _Runner(click.testing.CliRunner):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("mix_stderr", False)
        super().__init__(*args, **kwargs)

    def invoke(self, *args, **kwargs):
        result = super().invoke(*args, **kwargs)
        result.__class__ = _Result
        return result


def install() -> None:
    """Make ``click.testing.CliRunner`` behave as 8.2's where it is 8.1 (no-op from 8.2 on)."""
    if "mix_stderr" in inspect.signature(click.testing.CliRunner.__init__).parameters:
        click.testing.CliRunner = _Runner
