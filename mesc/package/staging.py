"""Outputs that appear whole or not at all: a directory is built in a hidden staging directory
beside its destination and renamed into place only when complete, and a JSON file is written
through a temporary file. Every command that writes a directory (export, synth-data, prepare,
build) goes through :func:`staging_area`, so an interrupted run (SIGINT or SIGTERM) leaves no
``.NAME.tmp-*`` behind and never damages what was there before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mesc.errors import MescError
from mesc.package.signals import sigterm_as_interrupt


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staging_area(dest):
    """Yield a fresh hidden directory beside ``dest`` (same file system, so moving it into
    place is a rename) that is removed when the block ends, unless the block moved it away.
    SIGTERM unwinds the block like SIGINT."""
    dest = Path(dest)
    with sigterm_as_interrupt():
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
            # mkdtemp makes 0700; the finished directory should get the user's usual permissions
            os.chmod(tmp, 0o777 & ~_umask())
            yield tmp
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def swapped_in(staged, dest):
    """Move the finished directory ``staged`` to ``dest``; a previous ``dest`` is kept aside
    until the block ends and put back if the block fails (e.g. the manifest recording the new
    directory could not be written)."""
    staged, dest = Path(staged), Path(dest)
    aside, moved = None, False
    try:
        if dest.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, aside / "d")
        os.rename(staged, dest)
        moved = True
        yield
    except BaseException:
        if moved:
            shutil.rmtree(dest, ignore_errors=True)
        if aside is not None and (aside / "d").exists():
            os.rename(aside / "d", dest)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(out, force: bool = False):
    """Yield a fresh temporary directory that becomes ``out`` only if the block succeeds.

    An existing ``out`` is refused unless ``force``; with ``force`` it is replaced only after
    the new directory is complete, so a failed or interrupted run never destroys the old one.
    """
    out = Path(out)
    if out.exists() and not force:
        raise MescError(f"output directory {out} already exists; pass --force to overwrite it")
    if out.exists() and not out.is_dir():
        raise MescError(f"output path {out} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MescError(f"cannot create the parent directory of {out}: {err}") from err
    with staging_area(parent / out.name) as tmp:
        yield tmp
        with swapped_in(tmp, out):
            pass


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by it still
    work) that replaces ``path`` by a rename when the block succeeds: readers, and a run
    interrupted by SIGINT or SIGTERM, never see half a file, and the old file stays until then."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep the usual permissions
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_json_atomic(path, data) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    with atomic_file(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
