"""The libpython that PyTriton's Triton server process must preload.

PyTriton's Python-backend stub (the process that hands requests to this interpreter) carries
its own libpython of the same minor version. Where this interpreter is a later patch release,
the two disagree on internals and the stub's model load fails (measured with nvidia-pytriton
0.7.0 and Python 3.11.7: ``'_thread.RLock' object has no attribute '_recursion_count'``).
Preloading this interpreter's own shared libpython into the server process makes the stub use
it instead.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from mesc.errors import MescError


def shared_libpython() -> Path:
    """This interpreter's shared libpython, or an error saying why serving cannot work without it."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    path = Path(libdir or "", name or "")
    if name and ".so" in name and path.is_file():
        return path
    raise MescError(
        f"this Python ({sysconfig.get_config_var('py_version') or 'unknown'}) has no shared libpython "
        f"(LIBDIR={libdir!r}, LDLIBRARY={name!r}): PyTriton's Triton Python-backend stub must load this "
        f"interpreter's libpython, since its own copy breaks with other patch releases. Serve from a Python "
        f"built with --enable-shared (distribution and python.org builds are; for pyenv: "
        f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install <version>)")


def preload_env(environ=None) -> dict:
    """``environ`` (default: this process's) with this interpreter's libpython first in LD_PRELOAD."""
    env = dict(os.environ if environ is None else environ)
    lib = str(shared_libpython())
    rest = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p != lib]
    env["LD_PRELOAD"] = ":".join([lib, *rest])
    return env
