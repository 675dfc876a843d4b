"""How interruptions, the user's environment errors and warnings reach the user of the command
line: one line on stderr each, never a traceback. Programming errors (TypeError, KeyError, an
OSError on a path mesc made up) keep theirs: those are bugs to fix, not messages to hide."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import warnings

import click

from mesc.package.signals import Terminated

# the machine's state, whatever the path: no traceback helps the user with these
_ENVIRONMENT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG}
# a missing or mistyped path: the user's where the user named it (or something inside it), else mesc's bug
_NAMED_PATH = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def interrupt_status(err: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def arg_values(args) -> list[str]:
    """Every value on a command line that may name a path: arguments, and the value of
    ``--option=value``."""
    return [a.split("=", 1)[1] if a.startswith("--") and "=" in a else a for a in args]


def _under_user_path(name, user_args) -> bool:
    path = os.path.abspath(os.fsdecode(name))
    for arg in user_args:
        given = os.path.abspath(arg)
        if path == given or path.startswith(given.rstrip(os.sep) + os.sep):
            return True
    return False


def os_error_message(err: OSError, user_args) -> str | None:
    """One line for an OSError caused by the user's environment (permissions, a read-only or
    full disk, a path the user gave that is missing); None for any other OSError."""
    names = [n for n in (err.filename, err.filename2) if n is not None]
    if err.errno in _ENVIRONMENT or (err.errno in _NAMED_PATH and any(_under_user_path(n, user_args)
                                                                      for n in names)):
        reason = err.strerror or str(err)
        return f"{' -> '.join(os.fsdecode(n) for n in names)}: {reason}" if names else reason
    return None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"mesc: warning: {' '.join(str(message).split())}", err=True)


@contextlib.contextmanager
def warnings_as_lines():
    """Within the block, a Python warning shows as ``mesc: warning: <message>`` (no category,
    no source line: those are for mesc's developers, the message is for its user)."""
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        warnings.showwarning = previous
