"""The mesc package on disk: manifest (``mesc.json``), per-segment ONNX, engines.

A package is the unit every command takes. This module loads it (validation in
:mod:`mesc.package.manifest`, checksums) and updates it safely: every manifest write holds the package
lock and merges into what is on disk (:mod:`mesc.package.merge`), so concurrent commands keep
each other's writes, and is atomic. It is deliberately free of torch and onnx imports, so the
runtime can use it.

Manifest layout (schema 1), all lists in execution order::

    {
      "schema_version": 1,
      "mesc_version": "0.1.0",
      "created": "2026-11-23T12:00:00Z",
      "source": {"model": ..., "weights": ..., "torch": ..., "onnx": ..., "opset": 17},
      "input": {"name": "image", "shape": [N, C, H, W], "dtype": "float32",
                "dynamic_batch": false,
                "normalization": {"scale": 255.0, "mean": [...], "std": [...]},
                "entry": {"segment": "entry", "input": "image_uint8", "layout": "NHWC"}
                         (optional: uint8 N x H x W x C images run the entry segment, which
                         normalises them on the device into "image"; absent: on the host)},
      "segments": [{"name": "chunk0", "kind": "entry"|"chunk"|"head"|"tail", "exit": null|"exit0",
                    "file": "onnx/chunk0.onnx",
                    "inputs":  [{"name", "shape", "dtype"}, ...],
                    "outputs": [{"name", "shape", "dtype"}, ...],
                    "flops": int}, ...],
      "exits": [{"name": "exit0", "index": 0, "segment": "head0", "tail": null|"tail0",
                 "logits": "exit0_logits",
                 "num_classes": 19, "output_stride": 8,
                 "labels": "exit0_labels"|null, "confidence": "exit0_confidence"|null,
                 "th_pix_input": "exit0_th_pix"|null, "policy_logits": "exit0_logits",
                 "policy": {"kind": one of mesc.policy.POLICY_KINDS (absent: mess),
                            "confidence": "top1"|"entropy", "edge": true, "stride": 8,
                            "band": "paper"|"wide" (absent: "wide"), "at": "output"|"native",
                            "pooling": "pool" (absent: "shift", the heads' window form),
                            "th_pix": 0.9, "th_img": 0.8 (mess), th_img (mean_*, learned),
                            "lo", "hi" (fft)}}, ...],
      "files": {"onnx/chunk0.onnx": "<sha256>", ...},
      "precisions": {"fp16"|"int8": {"segments": {"<segment>": "onnx_fp16/<segment>.onnx", ...},
                                     "accuracy": {"<exit>": {"agreement", "miou"}},
                                     "policy_pooling": {"<exit>": "shift"|"pool"} (optional), ...}},
      "engines": {"<target>": {"<precision>[-dla<N>]": {"dir", "plan", "trt_version", "device",
                                                         "segments": {"<segment>": {...}}}}},
      "latency": {"<backend/device>": {"<segment>": ms, ...}},
      "classes": [{"name": "road", "color": [128, 64, 128]}, ...]   (optional: one per class id,
                 from mesc export --class-names; overlays and label PNGs show these)
    }

A shape entry is an int, or a string for a dynamic dimension (``"batch"``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Tuple

from mesc.errors import MescError, PackageError
from mesc.package.locking import package_lock
from mesc.package.manifest import MANIFEST, manifest_paths, validate_manifest
from mesc.package.merge import check_dependencies, merge3, update_in_place
from mesc.package.paths import confined
from mesc.package.schema import EngineBuild, Exit, Input, LatencyRecord, Manifest, Precision, Segment
from mesc.package.staging import staging_area, swapped_in, write_json_atomic
from mesc.policy import COMPILED_POLICY_KEYS, check_policy


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(root: Path) -> dict:
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{root}: no {MANIFEST}; is this a package written by 'mesc export'?")
    try:
        return json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PackageError(f"{mpath}: not valid JSON ({err})") from err


def _check_paths(root: Path, manifest: dict) -> None:
    """Every path the manifest names stays inside ``root``, symlinks included, before any file
    is opened or hashed."""
    for where, rel in manifest_paths(manifest):
        confined(root, rel, where)


class Package:
    """A validated mesc package directory.

    ``Package.load(path)`` checks the manifest and every file's checksum; the accessors give
    the typed, read-only view of it (:mod:`mesc.package.schema`): :attr:`input`, the
    :attr:`segments` and :attr:`exits` in execution order, :attr:`latency`, :attr:`precisions`,
    :attr:`engines`. :attr:`manifest` is the JSON itself, for the commands that write it. Policy settings can be changed and saved back
    with :meth:`save` (atomic manifest rewrite).
    """

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        # the manifest as read: what this object changed since is what a save merges into disk
        self._base = copy.deepcopy(manifest)
        self._rebuild_view()

    @classmethod
    def load(cls, path, verify_checksums: bool = True) -> "Package":
        root = Path(path)
        if not root.exists():
            raise PackageError(f"{root}: no such package directory")
        if not root.is_dir():
            raise PackageError(f"{root}: not a directory (a mesc package is a directory with {MANIFEST})")
        manifest = _read_manifest(root)
        validate_manifest(manifest)
        _check_paths(root, manifest)
        pkg = cls(root, manifest)
        if verify_checksums:
            pkg.verify_files()
        return pkg

    def verify_files(self) -> None:
        for rel, digest in self.manifest["files"].items():
            p = self.path(rel)
            if not p.is_file():
                raise PackageError(f"{self.root}: file {rel} listed in the manifest is missing")
            actual = sha256_file(p)
            if actual != digest:
                raise PackageError(
                    f"{self.root}: file {rel} was altered (sha256 {actual[:12]}..., manifest says {digest[:12]}...)"
                )

    # the typed view ------------------------------------------------------------------------
    def _rebuild_view(self) -> None:
        self.view = Manifest.from_dict(self.manifest)
        self._exits_by_name = {ex.name: ex for ex in self.view.exits}
        self._segments_by_name = {seg.name: seg for seg in self.view.segments}

    def manifest_edited(self) -> None:
        """Rebuild the typed view after changing :attr:`manifest` in memory without saving
        (:meth:`save`, :meth:`set_policy` and :meth:`install_dir` rebuild it themselves)."""
        self._rebuild_view()

    @property
    def input(self) -> Input:
        return self.view.input

    @property
    def segments(self) -> Tuple[Segment, ...]:
        return self.view.segments

    @property
    def exits(self) -> Tuple[Exit, ...]:
        return self.view.exits

    @property
    def latency(self) -> Mapping[str, LatencyRecord]:
        return self.view.latency

    @property
    def precisions(self) -> Mapping[str, Precision]:
        return self.view.precisions

    @property
    def engines(self) -> Mapping[str, Mapping[str, EngineBuild]]:
        return self.view.engines

    @property
    def files(self) -> Mapping[str, str]:
        return self.view.files

    @property
    def source(self) -> Mapping[str, Any]:
        return self.view.source

    def segment(self, name: str) -> Segment:
        seg = self._segments_by_name.get(name)
        if seg is None:
            raise PackageError(f"{self.root}: no segment named '{name}'")
        return seg

    def exit(self, key) -> Exit:
        """An exit by name ('exit2') or by position among the package's exits (int)."""
        if isinstance(key, Exit):
            key = key.name
        if isinstance(key, int):
            if not 0 <= key < len(self.exits):
                raise MescError(f"exit position {key} is out of range: the package has {len(self.exits)} exits")
            return self.exits[key]
        ex = self._exits_by_name.get(key)
        if ex is None:
            raise MescError(f"no exit named '{key}'; the package's exits are {[e.name for e in self.exits]}")
        return ex

    def path(self, rel: str) -> Path:
        """``rel`` inside the package; a path leading outside it is refused."""
        return confined(self.root, rel, f"{self.root}")

    @property
    def entry(self) -> Segment | None:
        """The entry segment (uint8 images in, the float input out), or None where uint8
        images are normalised on the host."""
        return None if self.input.entry is None else self.segment(self.input.entry.segment)

    def segments_until(self, exit_key) -> list:
        """Segments that must run, in order, to take the given exit from uint8 images: its head
        and the chunks whose outputs it depends on (directly or through other chunks), after the
        entry where the package has one (float input skips it)."""
        ex = self.exit(exit_key)
        head = self.segment(ex.segment)
        order = self.segments[: self.segments.index(head)]
        wanted = set(head.input_names)
        chosen = [head]
        for seg in reversed(order):
            if seg.kind in ("entry", "chunk") and any(o in wanted for o in seg.output_names):
                chosen.append(seg)
                wanted |= set(seg.input_names)
        return chosen[::-1] + ([self.segment(ex.tail)] if ex.tail else [])

    # policy ------------------------------------------------------------------------------
    def policy(self, exit_key) -> dict:
        """A copy of one exit's policy settings (a plain dict, for changing or writing)."""
        return copy.deepcopy(dict(self.exit(exit_key).policy))

    def set_policy(self, exit_key, **settings) -> None:
        """Change one exit's policy settings in memory (validated); :meth:`save` writes them."""
        ex = self.manifest["exits"][self.exit(exit_key).position]
        new = dict(ex["policy"], **settings)
        check_policy(new, f"exit '{ex['name']}' policy")
        changed = [k for k in COMPILED_POLICY_KEYS if new.get(k) != ex["policy"].get(k)]
        if ex.get("th_pix_input") and changed:
            raise MescError(
                f"exit '{ex['name']}': {', '.join(changed)} {'is' if len(changed) == 1 else 'are'} compiled into "
                f"the exit's graph; re-export to change {'it' if len(changed) == 1 else 'them'}"
                + (" ('mesc calibrate --policy KIND --write' compiles another policy kind into the heads)"
                   if "kind" in changed else "")
            )
        ex["policy"] = new
        self._rebuild_view()

    def set_enabled(self, exit_key, enabled: bool) -> None:
        """Keep or drop an exit from input-dependent runs in memory (what ``mesc calibrate
        --write`` records as ``"enabled"``); :meth:`save` writes it."""
        ex = self.exit(exit_key)
        if not enabled and ex.position == len(self.exits) - 1:
            raise MescError(f"exit '{ex.name}' is the final exit and cannot be disabled")
        self.manifest["exits"][ex.position]["enabled"] = bool(enabled)
        self._rebuild_view()

    def save(self, depends_on=()) -> None:
        """Write this object's changes to the manifest (files and checksums are not touched).

        Under the package lock, the changes are merged into the manifest as it is on disk now:
        keys another command wrote meanwhile are kept; a key both changed differently, or a
        change to what the result was computed from (the input, segments, exits' structure,
        file checksums, and the key paths in ``depends_on``, e.g. ``[("latency", key)]``) is
        refused with a :class:`PackageError`. The write is atomic.
        """
        with package_lock(self.root):
            self._commit(self.manifest, depends_on)

    def _commit(self, ours: dict, depends_on=(), own_files_prefix=None, install=None) -> None:
        """Merge ``ours`` into the manifest on disk and write it (the caller holds the lock);
        ``install`` (a context manager) wraps the write: if the write fails, it undoes itself."""
        theirs = _read_manifest(self.root)
        check_dependencies(self._base, theirs, depends_on, own_files_prefix)
        merged = merge3(self._base, ours, theirs)
        validate_manifest(merged)
        _check_paths(self.root, merged)
        merged = copy.deepcopy(merged)
        with install or contextlib.nullcontext():
            write_json_atomic(self.root / MANIFEST, merged)
        update_in_place(self.manifest, merged)
        self._base = copy.deepcopy(merged)
        self._rebuild_view()

    def copy_manifest(self) -> dict:
        return copy.deepcopy(self.manifest)

    def staging(self, rel: str):
        """A context manager yielding a fresh hidden directory beside ``rel`` in the package,
        removed when the block ends (also on SIGINT and SIGTERM); finish the block with
        ``install_dir(tmp, rel, update)``, which moves it into place."""
        dest = self.path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return staging_area(dest)

    def install_dir(self, staged, rel: str, update=None, depends_on=()) -> None:
        """Move the finished directory ``staged`` to ``rel`` inside the package, replacing what
        was there, record its files' checksums (dropping the old ones) and apply ``update`` to
        the manifest, which is then rewritten atomically, merged as in :meth:`save`. ``staged``
        must be on the package's file system (see :meth:`staging`). If the manifest cannot be
        written, the previous directory is put back.
        """
        staged, dest = Path(staged), self.path(rel)
        prefix = rel.rstrip("/") + "/"
        files = {}
        for p in sorted(staged.rglob("*")):
            if p.is_file():
                files[prefix + p.relative_to(staged).as_posix()] = sha256_file(p)
        with package_lock(self.root):
            ours = self.copy_manifest()
            ours["files"] = {k: v for k, v in ours["files"].items() if not k.startswith(prefix)}
            ours["files"].update(files)
            if update is not None:
                update(ours)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._commit(ours, depends_on, own_files_prefix=prefix, install=swapped_in(staged, dest))
