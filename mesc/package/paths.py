"""Confinement of the paths a manifest names to the package directory.

A manifest is data from disk, possibly hand-edited or hostile: a path in it must never reach a
file outside its package, or a checksum listing could be used to hash (and print the hash of)
any file the user can read.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from mesc.errors import PackageError


def check_rel_path(rel, where: str) -> str:
    """Refuse a manifest path that is not a plain relative POSIX path inside the package (no
    absolute path, drive, backslash, ``..``, ``.`` or empty part); returns it unchanged."""
    if not isinstance(rel, str) or not rel:
        raise PackageError(f"{where}: a path must be a non-empty string, got {rel!r}")
    # a backslash is a separator on Windows and '\0' truncates in C: both hide the real target
    bad = "\\" in rel or "\0" in rel or ":" in rel.split("/")[0]
    parts = rel.split("/")
    if bad or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PackageError(f"{where}: path {rel!r} must be relative and normalised inside the package "
                           "(no absolute path, '..', '.', empty part or backslash)")
    return rel


def confined(root, rel, where: str) -> Path:
    """``root / rel`` after :func:`check_rel_path`, refused if a symlink on the way leads out of
    ``root``."""
    check_rel_path(rel, where)
    root = Path(root)
    path = root / PurePosixPath(rel)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise PackageError(f"{where}: path {rel!r} leads outside the package {root} (through a symlink)")
    return path
