"""Three-way merge of manifests, so concurrent commands on one package keep each other's writes.

A command loads the manifest (the *base*), changes it in memory (*ours*) and, under the package
lock, re-reads what is on disk now (*theirs*). Keys only one side changed are taken from that
side; a key both changed differently is a conflict. What the command's result was computed
from (its *dependencies*) must be unchanged on disk, or the result is stale.
"""

from __future__ import annotations

from mesc.errors import PackageError

MISSING = object()


class MergeConflict(PackageError):
    pass


def _where(path) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(path)) \
        or "the manifest"


def merge3(base, ours, theirs, path=()):
    """The merge of ``ours`` and ``theirs``, both changed from ``base``; MISSING stands for an
    absent key. Objects merge key by key, lists of unchanged length element by element."""
    if ours == base or theirs == ours:
        return theirs
    if theirs == base:
        return ours
    if isinstance(ours, dict) and isinstance(theirs, dict) and (base is MISSING or isinstance(base, dict)):
        base = {} if base is MISSING else base
        merged = {}
        for key in [*theirs, *(k for k in ours if k not in theirs)]:
            value = merge3(base.get(key, MISSING), ours.get(key, MISSING), theirs.get(key, MISSING), (*path, key))
            if value is not MISSING:
                merged[key] = value
        return merged
    if isinstance(ours, list) and isinstance(theirs, list) and isinstance(base, list) \
            and len(ours) == len(theirs) == len(base):
        return [merge3(b, o, t, (*path, i)) for i, (b, o, t) in enumerate(zip(base, ours, theirs))]
    raise MergeConflict(f"{_where(path)} was changed by another command since this one read the package")


def value_at(m, path):
    for key in path:
        if isinstance(m, dict) and key in m:
            m = m[key]
        elif isinstance(m, list) and isinstance(key, int) and -len(m) <= key < len(m):
            m = m[key]
        else:
            return MISSING
    return m


def _exits_structure(m):
    """The exits without their policy and enabled flag, the settings commands may change."""
    exits = m.get("exits")
    if not isinstance(exits, list):
        return exits
    return [{k: v for k, v in ex.items() if k not in ("policy", "enabled")} if isinstance(ex, dict) else ex
            for ex in exits]


def check_dependencies(base, theirs, depends_on=(), own_files_prefix=None) -> None:
    """Refuse when something a command's result was computed from changed on disk meanwhile:
    the input, the segments, the exits' structure, the checksums of files the command does not
    replace itself (``own_files_prefix``), and the key paths in ``depends_on``."""
    paths = [("schema_version",), ("input",), ("segments",)]
    paths += [("files", rel) for rel in (base.get("files") or {})
              if own_files_prefix is None or not rel.startswith(own_files_prefix)]
    paths += [(p,) if isinstance(p, str) else tuple(p) for p in depends_on]
    for path in paths:
        if value_at(base, path) != value_at(theirs, path):
            raise MergeConflict(f"{_where(path)} was changed by another command since this one read the package; "
                                "its result may be stale: run it again")
    if _exits_structure(base) != _exits_structure(theirs):
        raise MergeConflict("exits (other than their policy and enabled flag) were changed by another command "
                            "since this one read the package; run it again")


def update_in_place(dst: dict, src: dict) -> None:
    """Make ``dst`` equal to ``src`` keeping ``dst``'s objects (and lists' objects) where both
    sides have one, so code holding e.g. an exit's dict keeps seeing the package's state."""
    for key in [k for k in dst if k not in src]:
        del dst[key]
    for key, value in src.items():
        cur = dst.get(key)
        if isinstance(cur, dict) and isinstance(value, dict):
            update_in_place(cur, value)
        elif isinstance(cur, list) and isinstance(value, list) and len(cur) == len(value) \
                and all(isinstance(a, dict) and isinstance(b, dict) for a, b in zip(cur, value)):
            for a, b in zip(cur, value):
                update_in_place(a, b)
        else:
            dst[key] = value
