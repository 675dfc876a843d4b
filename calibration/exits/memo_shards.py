"""The memo built in shards anywhere, merged once (``mesc calibrate --memo-only --shard I/N``).

Shard ``I`` of ``N`` (``0 <= I < N``) runs every exit over one contiguous block of the
calibration images, cut at whole batches so that every image runs in the same batch as in one
run over the whole set (the logits, hence the memo, are then the same to the last bit), and
writes it beside the cache: ``--cache memo.npz`` -> ``memo.shard-I-of-N.npz``. A later calibrate
with that ``--cache`` and no ``--shard`` merges the N shards into the cache (in shard order: the
images in the set's order) and searches.

A shard records what made it, as fields that mean the same on every machine (:func:`fields`):
the package's file checksums and exit policy settings, the calibration data listed by relative
path and size (with ``--limit`` and ``--split`` applied), the th_pix grid, ``--resize``, the
backend and device, the batch and the memo version. Shards whose fields differ from each other or
from the run that merges them are refused, naming the field; so are a missing shard and shards of
different splits (N).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from mesc.errors import MescError

# what each field is called when a shard is refused
FIELD_NAMES = {
    "memo_version": "memo format (another mesc release)",
    "package": "package (its files' checksums)",
    "policy": "exit policy settings",
    "data": "calibration data (image and mask files, --limit, --split)",
    "grid": "th_pix grid",
    "resize": "--resize",
    "runs_on": "backend and device (--backend, --device)",
    "batch": "batch",
}


def parse_shard(text) -> tuple:
    """``"I/N"`` as (I, N) with ``0 <= I < N``, or the MescError saying what is wrong."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise MescError(f"--shard takes I/N (shard I of N, 0 <= I < N, e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise MescError(f"--shard {text}: I must be in 0..N-1 and N at least 1 (0/4 ... 3/4 for four shards)")
    return i, n


def shard_path(cache, i: int, n: int) -> Path:
    cache = Path(cache)
    return cache.with_name(f"{cache.stem}.shard-{i}-of-{n}.npz")


def shard_files(cache) -> dict:
    """The shard files beside ``cache``: (I, N) -> path."""
    cache = Path(cache)
    pattern = re.compile(re.escape(cache.stem) + r"\.shard-(\d+)-of-(\d+)\.npz")
    out = {}
    if cache.parent.is_dir():
        for p in cache.parent.iterdir():
            m = pattern.fullmatch(p.name)
            if m:
                out[(int(m.group(1)), int(m.group(2)))] = p
    return out


def data_listing(data_dir, pairs) -> str:
    """The calibration pairs by relative path and size: the same wherever the folder was copied."""
    h = hashlib.sha256()
    for img, mask in pairs:
        for p in (img, mask):
            h.update(f"{os.path.relpath(p, data_dir)}\0{Path(p).stat().st_size}\n".encode())
    return h.hexdigest()


def fields(pkg, pairs, data_dir, grid, resize: bool, runs_on: str, batch: int, version: int,
           policy_keys) -> dict:
    """What a shard records about how it was made (see the module docstring)."""
    return {"memo_version": version, "package": dict(pkg.files),
            "policy": [{k: e.policy.get(k) for k in policy_keys} for e in pkg.exits],
            "data": data_listing(data_dir, pairs), "grid": [float(g) for g in grid], "resize": bool(resize),
            "runs_on": runs_on, "batch": int(batch)}


def rows(count: int, shard, batch: int) -> range:
    """The images of shard ``(I, N)``: a contiguous block of whole batches."""
    i, n = shard
    batches = -(-count // batch)
    lo, hi = batches * i // n, batches * (i + 1) // n
    return range(min(lo * batch, count), min(hi * batch, count))


def _differing(want: dict, got: dict) -> list:
    return [k for k in FIELD_NAMES if json.dumps(want.get(k), sort_keys=True) != json.dumps(got.get(k), sort_keys=True)]


def merge(cache, want: dict, load):
    """The memo merged from the shards beside ``cache`` (each read by ``load``, the memo
    class' own), or None where there are none. ``want``: the fields of the run merging them;
    refused (MescError) on any difference."""
    found = shard_files(cache)
    if not found:
        return None
    splits = sorted({n for _, n in found})
    if len(splits) > 1:
        raise MescError(f"shards beside {cache} come from different splits ({', '.join(f'N={n}' for n in splits)}): "
                        f"{', '.join(sorted(p.name for p in found.values()))}; keep the shards of one --shard I/N run")
    n = splits[0]
    missing = [i for i in range(n) if (i, n) not in found]
    if missing:
        raise MescError(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} of {n} missing beside {cache}: run "
                        f"'mesc calibrate ... --cache {cache} --memo-only --shard I/{n}' for each, then calibrate again")
    parts = []
    for i in range(n):
        path = found[(i, n)]
        memo = load(path)
        got = memo.meta.get("fields") or {}
        bad = _differing(want, got)
        if bad:
            raise MescError(f"shard {path} was made with another {FIELD_NAMES[bad[0]]} than this run"
                            + (f" (and {', '.join(bad[1:])})" if len(bad) > 1 else "")
                            + "; rebuild it, or remove it to calibrate without it")
        if memo.meta.get("shard") != [i, n]:
            raise MescError(f"shard {path} says it is shard {memo.meta.get('shard')}, not {i}/{n}; rebuild it")
        parts.append(memo)
    first = parts[0]
    for p in parts[1:]:
        if p.exits != first.exits or p.num_classes != first.num_classes:
            raise MescError(f"shards beside {cache} disagree on the exits; rebuild them")
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    scores = {k: cat([p.scores[k] for p in parts]) for k in first.scores}
    features = None if first.features is None else cat([p.features for p in parts])
    meta = dict(first.meta)
    meta.pop("shard", None)
    meta["conf_check_max_abs"] = max(p.meta.get("conf_check_max_abs") or 0.0 for p in parts)
    meta["merged_shards"] = n
    return type(first)(first.exits, first.num_classes, first.th_pix_grid, cat([p.inter for p in parts]),
                cat([p.union for p in parts]), scores, sum((p.images for p in parts), []), meta, features)


__all__ = ["FIELD_NAMES", "parse_shard", "shard_path", "shard_files", "fields", "rows", "merge", "data_listing"]
