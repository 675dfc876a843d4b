"""The mesc package on disk: manifest (``mesc.json``), per-segment ONNX, engines.

A package is the unit every command takes. This module validates it (schema, files,
checksums) and writes it atomically. It is deliberately free of torch and onnx imports, so the
runtime can use it.

Manifest layout (schema 1), all lists in execution order::

    {
      "schema_version": 1,
      "mesc_version": "0.1.0",
      "created": "2026-11-23T12:00:00Z",
      "source": {"model": ..., "weights": ..., "torch": ..., "onnx": ..., "opset": 17},
      "input": {"name": "image", "shape": [N, C, H, W], "dtype": "float32",
                "dynamic_batch": false,
                "normalization": {"scale": 255.0, "mean": [...], "std": [...]}},
      "segments": [{"name": "chunk0", "kind": "chunk"|"head"|"tail", "exit": null|"exit0",
                    "file": "onnx/chunk0.onnx",
                    "inputs":  [{"name", "shape", "dtype"}, ...],
                    "outputs": [{"name", "shape", "dtype"}, ...],
                    "flops": int}, ...],
      "exits": [{"name": "exit0", "index": 0, "segment": "head0", "tail": null|"tail0",
                 "logits": "exit0_logits",
                 "num_classes": 19, "output_stride": 8,
                 "labels": "exit0_labels"|null, "confidence": "exit0_confidence"|null,
                 "th_pix_input": "exit0_th_pix"|null, "policy_logits": "exit0_logits",
                 "policy": {"confidence": "top1"|"entropy", "edge": true, "stride": 8,
                            "at": "output"|"native",
                            "th_pix": 0.9, "th_img": 0.8}}, ...],
      "files": {"onnx/chunk0.onnx": "<sha256>", ...},
      "precisions": {"fp16"|"int8": {"segments": {"<segment>": "onnx_fp16/<segment>.onnx", ...},
                                     "accuracy": {"<exit>": {"agreement", "miou"}}, ...}},
      "engines": {"<target>": {"<precision>[-dla<N>]": {"dir", "plan", "trt_version", "device",
                                                         "segments": {"<segment>": {...}}}}},
      "latency": {"<backend/device>": {"<segment>": ms, ...}}
    }

A shape entry is an int, or a string for a dynamic dimension (``"batch"``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mesc.confidence_kinds import CONFIDENCE_KINDS
from mesc.errors import MescError, PackageError

SCHEMA_VERSION = 1
MANIFEST = "mesc.json"
POLICY_KEYS = {"confidence", "edge", "stride", "at", "th_pix", "th_img"}
# settings the exporter compiles into an exit's graph (th_pix is a graph input, th_img a host test)
COMPILED_POLICY_KEYS = ("confidence", "edge", "stride", "at")
POLICY_AT = ("output", "native")
# chunk: backbone; head: an exit's own layers and policy; tail: what only the exit's prediction
# needs (final upsampling, labels), run only for the images that leave there
SEGMENT_KINDS = ("chunk", "head", "tail")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staging_dir(out, force: bool = False):
    """Yield a fresh temporary directory that becomes ``out`` only if the block succeeds.

    The temporary directory lives beside ``out`` so the final rename stays on one file
    system. An existing ``out`` is refused unless ``force``; with ``force`` it is replaced only
    after the new package is complete, so a failed run never destroys the old one.
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    # mkdtemp makes 0700; the finished directory should get the user's usual permissions
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / "pkg")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path, data) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep the usual permissions
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _need(cond, where, msg):
    if not cond:
        raise PackageError(f"{where}: {msg}")


def _check_tensor(spec, where):
    _need(isinstance(spec, dict), where, "expected an object with name, shape and dtype")
    for key in ("name", "shape", "dtype"):
        _need(key in spec, where, f"missing '{key}'")
    _need(isinstance(spec["shape"], list), where, f"shape must be a list, got {spec['shape']!r}")
    for d in spec["shape"]:
        _need(isinstance(d, (int, str)), where, f"shape entries must be ints or names, got {d!r}")


def check_policy(policy: dict, where: str) -> None:
    """Validate one exit's policy settings; raises :class:`PackageError` naming the bad key."""
    _need(isinstance(policy, dict), where, "policy must be an object")
    unknown = set(policy) - POLICY_KEYS
    _need(not unknown, where, f"unknown policy keys {sorted(unknown)}; expected {sorted(POLICY_KEYS)}")
    if "confidence" in policy:
        _need(policy["confidence"] in CONFIDENCE_KINDS, where,
              f"confidence must be one of {CONFIDENCE_KINDS}, got {policy['confidence']!r}")
    for key in ("th_pix", "th_img"):
        if key in policy:
            v = policy[key]
            _need(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
                  where, f"{key} must be a number in [0, 1], got {v!r}")
    if "at" in policy:
        _need(policy["at"] in POLICY_AT, where, f"at must be one of {POLICY_AT}, got {policy['at']!r}")
    if "stride" in policy:
        _need(isinstance(policy["stride"], int) and policy["stride"] >= 1, where,
              f"stride must be a positive int, got {policy['stride']!r}")
    if "edge" in policy:
        _need(isinstance(policy["edge"], bool), where, f"edge must be true or false, got {policy['edge']!r}")


def validate_manifest(m) -> None:
    """Check the manifest's structure; every message names the entry at fault."""
    _need(isinstance(m, dict), MANIFEST, "expected a JSON object")
    _need("schema_version" in m, MANIFEST, "missing 'schema_version'")
    _need(m["schema_version"] == SCHEMA_VERSION, MANIFEST,
          f"schema_version {m['schema_version']!r} is not supported (this mesc reads {SCHEMA_VERSION})")
    for key in ("input", "segments", "exits", "files"):
        _need(key in m, MANIFEST, f"missing '{key}'")
    inp = m["input"]
    _check_tensor(inp, "input")
    _need(len(inp["shape"]) == 4, "input", f"shape must be NxCxHxW, got {inp['shape']}")
    _need(isinstance(m["segments"], list) and m["segments"], MANIFEST, "'segments' must be a non-empty list")
    names = set()
    produced = {inp["name"]}
    for i, seg in enumerate(m["segments"]):
        where = f"segments[{i}]"
        _need(isinstance(seg, dict), where, "expected an object")
        for key in ("name", "kind", "file", "inputs", "outputs"):
            _need(key in seg, where, f"missing '{key}'")
        where = f"segment '{seg['name']}'"
        _need(seg["name"] not in names, where, "duplicate segment name")
        names.add(seg["name"])
        _need(seg["kind"] in SEGMENT_KINDS, where, f"kind must be one of {SEGMENT_KINDS}, got {seg['kind']!r}")
        _need(seg["file"] in m["files"], where, f"file {seg['file']} has no checksum in 'files'")
        for t in seg["inputs"]:
            _check_tensor(t, f"{where} input")
            if not t["name"].endswith("_th_pix"):
                _need(t["name"] in produced, where,
                      f"input '{t['name']}' is not produced by an earlier segment or the image")
        for t in seg["outputs"]:
            _check_tensor(t, f"{where} output")
            produced.add(t["name"])
    _need(isinstance(m["exits"], list) and m["exits"], MANIFEST, "'exits' must be a non-empty list")
    for i, ex in enumerate(m["exits"]):
        where = f"exits[{i}]"
        for key in ("name", "segment", "logits", "num_classes", "output_stride", "policy"):
            _need(key in ex, where, f"missing '{key}'")
        where = f"exit '{ex['name']}'"
        _need(ex["segment"] in names, where, f"segment '{ex['segment']}' is not in 'segments'")
        _need(ex.get("tail") is None or ex["tail"] in names, where, f"tail '{ex.get('tail')}' is not in 'segments'")
        _need(ex["logits"] in produced, where, f"logits '{ex['logits']}' is not produced by any segment")
        check_policy(ex["policy"], f"{where} policy")
        _need(isinstance(ex.get("enabled", True), bool), where, f"enabled must be true or false, got {ex.get('enabled')!r}")
    _need(m["exits"][-1].get("enabled", True), f"exit '{m['exits'][-1]['name']}'",
          "the final exit cannot be disabled: images that no earlier exit takes leave there")


class Package:
    """A validated mesc package directory.

    ``Package.load(path)`` checks the manifest and every file's checksum; the accessors give
    the segments and exits in execution order. Policy settings can be changed and saved back
    with :meth:`save` (atomic manifest rewrite).
    """

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest

    @classmethod
    def load(cls, path, verify_checksums: bool = True) -> "Package":
        root = Path(path)
        if not root.exists():
            raise PackageError(f"{root}: no such package directory")
        if not root.is_dir():
            raise PackageError(f"{root}: not a directory (a mesc package is a directory with {MANIFEST})")
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise PackageError(f"{root}: no {MANIFEST}; is this a package written by 'mesc export'?")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PackageError(f"{mpath}: not valid JSON ({err})") from err
        validate_manifest(manifest)
        pkg = cls(root, manifest)
        if verify_checksums:
            pkg.verify_files()
        return pkg

    def verify_files(self) -> None:
        for rel, digest in self.manifest["files"].items():
            p = self.root / rel
            if not p.is_file():
                raise PackageError(f"{self.root}: file {rel} listed in the manifest is missing")
            actual = sha256_file(p)
            if actual != digest:
                raise PackageError(
                    f"{self.root}: file {rel} was altered (sha256 {actual[:12]}..., manifest says {digest[:12]}...)"
                )

    # accessors -------------------------------------------------------------------------
    @property
    def input(self) -> dict:
        return self.manifest["input"]

    @property
    def segments(self) -> list[dict]:
        return self.manifest["segments"]

    @property
    def exits(self) -> list[dict]:
        return self.manifest["exits"]

    def segment(self, name: str) -> dict:
        for seg in self.segments:
            if seg["name"] == name:
                return seg
        raise PackageError(f"{self.root}: no segment named '{name}'")

    def exit(self, key) -> dict:
        """An exit by name ('exit2') or by position among the package's exits (int)."""
        if isinstance(key, int):
            if not 0 <= key < len(self.exits):
                raise MescError(f"exit position {key} is out of range: the package has {len(self.exits)} exits")
            return self.exits[key]
        for ex in self.exits:
            if ex["name"] == key:
                return ex
        raise MescError(f"no exit named '{key}'; the package's exits are {[e['name'] for e in self.exits]}")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def segments_until(self, exit_key) -> list[dict]:
        """Segments that must run, in order, to take the given exit: its head and the chunks
        whose outputs it depends on (directly or through other chunks)."""
        head = self.segment(self.exit(exit_key)["segment"])
        order = self.segments[: self.segments.index(head)]
        wanted = {t["name"] for t in head["inputs"]}
        chosen = [head]
        for seg in reversed(order):
            if seg["kind"] == "chunk" and any(o["name"] in wanted for o in seg["outputs"]):
                chosen.append(seg)
                wanted |= {t["name"] for t in seg["inputs"]}
        tail = self.exit(exit_key).get("tail")
        return chosen[::-1] + ([self.segment(tail)] if tail else [])

    # policy ------------------------------------------------------------------------------
    def policy(self, exit_key) -> dict:
        return dict(self.exit(exit_key)["policy"])

    def set_policy(self, exit_key, **settings) -> None:
        """Change one exit's policy settings in memory (validated); :meth:`save` writes them."""
        ex = self.exit(exit_key)
        new = dict(ex["policy"], **settings)
        check_policy(new, f"exit '{ex['name']}' policy")
        changed = [k for k in COMPILED_POLICY_KEYS if new.get(k) != ex["policy"].get(k)]
        if ex.get("th_pix_input") and changed:
            raise MescError(
                f"exit '{ex['name']}': {', '.join(changed)} {'is' if len(changed) == 1 else 'are'} compiled into "
                f"the exit's graph; re-export to change {'it' if len(changed) == 1 else 'them'}"
            )
        ex["policy"] = new

    def save(self) -> None:
        """Rewrite the manifest atomically (files and checksums are not touched)."""
        validate_manifest(self.manifest)
        write_json_atomic(self.root / MANIFEST, self.manifest)

    def copy_manifest(self) -> dict:
        return copy.deepcopy(self.manifest)

    def install_dir(self, staged, rel: str, update=None) -> None:
        """Move the finished directory ``staged`` to ``rel`` inside the package, replacing what
        was there, record its files' checksums (dropping the old ones) and apply ``update`` to
        the manifest, which is then rewritten atomically. ``staged`` must be on the package's
        file system (e.g. a ``tempfile.mkdtemp(dir=pkg.root)``). If the manifest cannot be
        written, the previous directory is put back.
        """
        staged, dest = Path(staged), self.root / rel
        manifest = self.copy_manifest()
        prefix = rel.rstrip("/") + "/"
        files = {k: v for k, v in manifest["files"].items() if not k.startswith(prefix)}
        for p in sorted(staged.rglob("*")):
            if p.is_file():
                files[prefix + p.relative_to(staged).as_posix()] = sha256_file(p)
        manifest["files"] = files
        if update is not None:
            update(manifest)
        validate_manifest(manifest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent)) / "d"
            os.rename(dest, old)
        os.rename(staged, dest)
        try:
            write_json_atomic(self.root / MANIFEST, manifest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            if old is not None:
                os.rename(old, dest)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old.parent, ignore_errors=True)
        self.manifest = manifest
