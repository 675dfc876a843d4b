"""An exclusive lock on a package directory, held while a command rewrites its manifest.

The lock is ``flock`` on the directory itself rather than on a lock file: it leaves nothing in
the package, and there is no lock file that could be deleted while another process waits on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from mesc.errors import PackageError

# manifest updates hold the lock for milliseconds; this long means another command is stuck
LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def package_lock(root, timeout: float | None = None):
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise PackageError(f"{root}: cannot open the package to lock it ({err})") from err
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PackageError(
                        f"{root}: another mesc command has held the package's lock for over {timeout:g} s; "
                        "wait for it to finish (or stop it) and run this again") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
