"""Validation of a package manifest (``mesc.json``, layout in :mod:`mesc.package`).

Everything the runtime and the commands rely on is checked here, at load, so a hand-edited or
damaged manifest fails with one message naming the field instead of crashing deep inside a
run. Every path the manifest names is confined to the package (:mod:`mesc.package.paths`).
"""

from __future__ import annotations

import math

from mesc.errors import PackageError
from mesc.package.paths import check_rel_path
from mesc.policy import IN_GRAPH_KEYS, POOLINGS, check_exit_policy  # an exit's policy is the policy's to check

SCHEMA_VERSION = 1
MANIFEST = "mesc.json"
# chunk: backbone; head: an exit's own layers and policy; tail: what only the exit's prediction
# needs (final upsampling, labels), run only for the images that leave there; entry: uint8
# N x H x W x C images -> the normalised float input (see ENTRY_LAYOUT), run only for uint8 input
SEGMENT_KINDS = ("entry", "chunk", "head", "tail")
# the one layout an entry segment takes: what image readers and cameras give (H x W x C rows)
ENTRY_LAYOUT = "NHWC"
# the element types ONNX graphs exported by mesc exchange (ONNX Runtime's names)
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool")


def _need(cond, where, msg):
    if not cond:
        raise PackageError(f"{where}: {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need_name(v, where, what="name"):
    _need(isinstance(v, str) and v != "", where, f"{what} must be a non-empty string, got {v!r}")


def _need_object(v, where, what):
    _need(isinstance(v, dict), where, f"{what} must be an object, got {type(v).__name__}")


def _check_tensor(spec, where):
    _need(isinstance(spec, dict), where, "expected an object with name, shape and dtype")
    for key in ("name", "shape", "dtype"):
        _need(key in spec, where, f"missing '{key}'")
    _need_name(spec["name"], where)
    _need(isinstance(spec["shape"], list), where, f"shape must be a list, got {spec['shape']!r}")
    for d in spec["shape"]:
        _need((_is_int(d) and d >= 0) or (isinstance(d, str) and d != ""), where,
              f"shape entries must be non-negative ints or names, got {d!r}")
    _need(spec["dtype"] in DTYPES, where, f"dtype must be one of {DTYPES}, got {spec['dtype']!r}")


def _same_type(a, b) -> bool:
    """Same dtype and rank, and the same size wherever both give a fixed size (symbolic names
    may differ between the graphs of two segments)."""
    return a["dtype"] == b["dtype"] and len(a["shape"]) == len(b["shape"]) and all(
        x == y for x, y in zip(a["shape"], b["shape"]) if _is_int(x) and _is_int(y))


def _check_input(inp):
    _check_tensor(inp, "input")
    shape = inp["shape"]
    _need(len(shape) == 4, "input", f"shape must be NxCxHxW, got {shape}")
    _need(all(_is_int(d) and d >= 1 for d in shape[1:]), "input",
          f"shape: C, H and W must be positive ints, got {shape}")
    _need(not _is_int(shape[0]) or shape[0] >= 1, "input", f"shape: the batch must be positive, got {shape[0]}")
    _need(isinstance(inp.get("dynamic_batch", False), bool), "input",
          f"dynamic_batch must be true or false, got {inp.get('dynamic_batch')!r}")
    _check_normalization(inp)
    _check_entry_record(inp)


def _check_normalization(inp):
    shape = inp["shape"]
    norm = inp.get("normalization")
    if norm is None:
        return
    where = "input normalization"
    _need_object(norm, where, "normalization")
    if "scale" in norm:
        _need(_is_number(norm["scale"]) and norm["scale"] > 0, where,
              f"scale must be a positive finite number, got {norm['scale']!r}")
    for key in ("mean", "std"):
        if key in norm:
            v = norm[key]
            _need(isinstance(v, list) and len(v) in (1, shape[1]) and all(_is_number(x) for x in v), where,
                  f"{key} must be a list of 1 or {shape[1]} finite numbers, got {v!r}")
    _need(0 not in norm.get("std", []), where, f"std must not be zero, got {norm.get('std')!r}")


def _entry_image(inp) -> dict:
    """The tensor an entry segment reads: the input's images as uint8 N x H x W x C."""
    n, c, h, w = inp["shape"]
    return {"name": inp["entry"]["input"], "shape": [n, h, w, c], "dtype": "uint8"}


def _check_entry_record(inp):
    """``input.entry``: uint8 images run the segment it names, which normalises them on the device."""
    entry = inp.get("entry")
    if entry is None:
        return
    where = "input entry"
    _need_object(entry, where, "entry")
    for key in ("segment", "input"):
        _need_name(entry.get(key), where, key)
    _need(entry["input"] != inp["name"], where, f"input must differ from the float input's name '{inp['name']}'")
    _need(entry.get("layout") == ENTRY_LAYOUT, where,
          f"layout must be {ENTRY_LAYOUT!r} (uint8 N x H x W x C), got {entry.get('layout')!r}")


def _check_entry(m, segs):
    """The entry segment, where the input names one: first, and from the uint8 images to exactly
    the float input the first chunk reads (so float input can skip it)."""
    inp, first = m["input"], m["segments"][0]
    if inp.get("entry") is None:
        return  # and no segment is an entry (checked per segment)
    entries = [n for n, s in segs.items() if s["kind"] == "entry"]
    name = inp["entry"]["segment"]
    where = f"segment '{name}'"
    _need(name in segs, "input entry", f"segment '{name}' is not in 'segments'")
    _need(segs[name]["kind"] == "entry", where, f"the input's entry is a {segs[name]['kind']}, not an entry segment")
    _need(first["name"] == name, where, "the entry segment must be the first segment")
    _need(entries == [name], f"segment '{entries[-1]}'", "a second entry segment")
    seg, image = segs[name], _entry_image(inp)
    _need(seg.get("exit") is None, where, f"an entry segment belongs to no exit, got exit {seg.get('exit')!r}")
    _need([t["name"] for t in seg["inputs"]] == [image["name"]], where,
          f"an entry segment reads the uint8 image '{image['name']}' only, got {[t['name'] for t in seg['inputs']]}")
    _need(_same_type(seg["inputs"][0], image), where,
          f"input '{image['name']}' is {seg['inputs'][0]['dtype']}{seg['inputs'][0]['shape']} but uint8 "
          f"N x H x W x C images of the input are uint8{image['shape']}")
    _need([t["name"] for t in seg["outputs"]] == [inp["name"]], where,
          f"an entry segment gives the float input '{inp['name']}' only, got {[t['name'] for t in seg['outputs']]}")
    _need(_same_type(seg["outputs"][0], inp), where,
          f"output '{inp['name']}' is {seg['outputs'][0]['dtype']}{seg['outputs'][0]['shape']} but the input is "
          f"{inp['dtype']}{inp['shape']}")


def _check_segments(m, files):
    _need(isinstance(m["segments"], list) and m["segments"], MANIFEST, "'segments' must be a non-empty list")
    inp = m["input"]
    producers = {inp["name"]: ("the image", inp)}
    if inp.get("entry") is not None:
        image = _entry_image(inp)
        producers[image["name"]] = ("the uint8 image", image)
    segs = {}
    for i, seg in enumerate(m["segments"]):
        where = f"segments[{i}]"
        _need(isinstance(seg, dict), where, "expected an object")
        for key in ("name", "kind", "file", "inputs", "outputs"):
            _need(key in seg, where, f"missing '{key}'")
        _need_name(seg["name"], where)
        where = f"segment '{seg['name']}'"
        _need(seg["name"] not in segs, where, "duplicate segment name")
        segs[seg["name"]] = seg
        _need(seg["kind"] in SEGMENT_KINDS, where, f"kind must be one of {SEGMENT_KINDS}, got {seg['kind']!r}")
        _need(seg["kind"] != "entry" or inp.get("entry") is not None, where,
              "an entry segment, but the input records no entry (input.entry)")
        check_rel_path(seg["file"], f"{where} file")
        _need(seg["file"] in files, where, f"file {seg['file']} has no checksum in 'files'")
        _need(seg.get("exit") is None or isinstance(seg["exit"], str), where,
              f"exit must be an exit name or null, got {seg.get('exit')!r}")
        _need(seg.get("flops") is None or (_is_number(seg["flops"]) and seg["flops"] >= 0), where,
              f"flops must be a non-negative number, got {seg.get('flops')!r}")
        for key in ("inputs", "outputs"):
            _need(isinstance(seg[key], list), where, f"{key} must be a list, got {type(seg[key]).__name__}")
        # a graph without inputs or outputs cannot be a segment: the manifest lost them
        _need(seg["inputs"] and seg["outputs"], where, "inputs and outputs must not be empty")
        seen = set()
        for t in seg["inputs"]:
            _check_tensor(t, f"{where} input")
            _need(t["name"] not in seen, where, f"input '{t['name']}' is listed twice")
            seen.add(t["name"])
            if t["name"] not in producers and seg["kind"] == "head" and t["name"].endswith("_th_pix"):
                continue  # fed by the runtime (the exit's th_pix), checked with the exit
            # float input skips the entry: nothing else may need the uint8 image
            _need(seg["kind"] == "entry" or producers.get(t["name"], ("",))[0] != "the uint8 image", where,
                  f"input '{t['name']}' is the uint8 image, which only the entry segment reads")
            _need(t["name"] in producers, where,
                  f"input '{t['name']}' is not produced by an earlier segment or the image")
            src, spec = producers[t["name"]]
            _need(_same_type(t, spec), where,
                  f"input '{t['name']}' is {t['dtype']}{t['shape']} but {src} gives {spec['dtype']}{spec['shape']}")
        for t in seg["outputs"]:
            _check_tensor(t, f"{where} output")
            if seg["kind"] == "entry" and t["name"] == inp["name"]:
                continue  # the float input itself, made from the uint8 image (checked in _check_entry)
            _need(t["name"] not in producers, where,
                  f"output '{t['name']}' is already produced by {producers.get(t['name'], ('',))[0]}")
            producers[t["name"]] = (f"segment '{seg['name']}'", t)
    _check_entry(m, segs)
    return segs


def _outputs(seg):
    return {t["name"] for t in seg["outputs"]} if seg else set()


def exit_points(exits) -> list[int]:
    """Each exit's exit point (0-based, shallow to deep). A model may offer several candidate
    heads at one point (exit-architecture search); their exits share a ``"point"``. Packages
    written before candidates existed have none: every exit is then its own point."""
    return [ex.get("point", k) for k, ex in enumerate(exits)]


def _check_points(exits) -> None:
    points = exit_points(exits)
    for k, (ex, p) in enumerate(zip(exits, points)):
        where = f"exit '{ex.get('name', k)}'"
        _need(_is_int(p) and p >= 0, where, f"point must be a non-negative integer, got {p!r}")
        _need(ex.get("candidate", 0) is not None and _is_int(ex.get("candidate", 0)) and ex.get("candidate", 0) >= 0,
              where, f"candidate must be a non-negative integer, got {ex.get('candidate')!r}")
        _need(k == 0 or p >= points[k - 1], where, "exits must be in point order (shallow to deep)")
    _need(points.count(points[-1]) == 1, f"exit '{exits[-1].get('name')}'",
          "the final exit point must have exactly one head (candidates are for early exit points)")


def _check_exits(m, segs):
    exits = m["exits"]
    _need(isinstance(exits, list) and exits, MANIFEST, "'exits' must be a non-empty list")
    order = list(segs)
    names, heads, last_index, last_pos = set(), set(), None, -1
    for i, ex in enumerate(exits):
        where = f"exits[{i}]"
        _need(isinstance(ex, dict), where, "expected an object")
        for key in ("name", "segment", "logits", "num_classes", "output_stride", "policy"):
            _need(key in ex, where, f"missing '{key}'")
        _need_name(ex["name"], where)
        where = f"exit '{ex['name']}'"
        _need(ex["name"] not in names, where, "duplicate exit name")
        names.add(ex["name"])
        if "index" in ex:
            _need(_is_int(ex["index"]) and ex["index"] >= 0, where,
                  f"index must be a non-negative int, got {ex['index']!r}")
            _need(last_index is None or ex["index"] > last_index, where,
                  f"index {ex['index']} is not after the previous exit's {last_index}: exits must be in model order")
            last_index = ex["index"]
        for key in ("segment", "logits"):
            _need_name(ex[key], where, key)
        for key in ("tail", "policy_logits", *IN_GRAPH_KEYS):
            _need(ex.get(key) is None or (isinstance(ex[key], str) and ex[key]), where,
                  f"{key} must be a name or null, got {ex.get(key)!r}")
        for key in ("num_classes", "output_stride"):
            _need(_is_int(ex[key]) and ex[key] >= 1, where, f"{key} must be a positive int, got {ex[key]!r}")
        head = segs.get(ex["segment"])
        _need(head is not None, where, f"segment '{ex['segment']}' is not in 'segments'")
        _need(head["kind"] == "head", where, f"segment '{ex['segment']}' is a {head['kind']}, not a head")
        _need(ex["segment"] not in heads, where, f"segment '{ex['segment']}' is the head of another exit")
        heads.add(ex["segment"])
        pos = order.index(ex["segment"])
        _need(pos > last_pos, where, f"head '{ex['segment']}' runs before the previous exit's head: "
                                     "exits must be in model order")
        last_pos = pos
        tail = None
        if ex.get("tail") is not None:
            tail = segs.get(ex["tail"])
            _need(tail is not None, where, f"tail '{ex['tail']}' is not in 'segments'")
            _need(tail["kind"] == "tail", where, f"tail '{ex['tail']}' is a {tail['kind']}, not a tail")
        # what the runtime fetches from the head and from the tail
        from_either = _outputs(head) | _outputs(tail)
        _need(ex["logits"] in from_either, where,
              f"logits '{ex['logits']}' is not an output of its head or tail")
        for key, where_from, whom in (("labels", _outputs(tail) if tail else _outputs(head), "tail" if tail else "head"),
                                      ("confidence", _outputs(head), "head"),
                                      ("policy_logits", _outputs(head), "head")):
            if ex.get(key) is not None:
                _need(ex[key] in where_from, where, f"{key} '{ex[key]}' is not an output of its {whom}")
        if ex.get("th_pix_input") is not None:
            _need(ex["th_pix_input"] in {t["name"] for t in head["inputs"]}, where,
                  f"th_pix_input '{ex['th_pix_input']}' is not an input of its head")
        fed = {t["name"] for t in head["inputs"]} - _outputs_before(m, segs, head)
        _need(fed <= {ex.get("th_pix_input")}, where,
              f"its head reads {sorted(fed)}, which no earlier segment gives and is not the exit's th_pix_input")
        # the runtime runs the policy either in every exit's graph or on the host for all
        check_exit_policy(ex, where)
        if tail is not None:
            _need({t["name"] for t in tail["inputs"]} <= _outputs(head) | _outputs_before(m, segs, head), where,
                  f"tail '{tail['name']}' reads tensors its head does not give")
        _need(isinstance(ex.get("enabled", True), bool), where, f"enabled must be true or false, got {ex.get('enabled')!r}")
        _need(ex.get("config") is None or isinstance(ex["config"], dict), where,
              f"config must be an object (the head's ExitConfig), got {type(ex.get('config')).__name__}")
    _check_points(exits)
    _need(len({ex.get("labels") is None for ex in exits}) == 1, "exits",
          "the policy must be in the graph of every exit or of none")
    _need(exits[-1].get("enabled", True), f"exit '{exits[-1]['name']}'",
          "the final exit cannot be disabled: images that no earlier exit takes leave there")
    # a head no exit reads would never run, and its inputs would never be fetched
    orphans = [n for n, s in segs.items() if s["kind"] == "head" and n not in heads]
    _need(not orphans, f"segment '{orphans[0]}'" if orphans else "", "a head that no exit uses")
    tails = {ex.get("tail") for ex in exits} - {None}
    orphans = [n for n, s in segs.items() if s["kind"] == "tail" and n not in tails]
    _need(not orphans, f"segment '{orphans[0]}'" if orphans else "", "a tail that no exit uses")
    for n, seg in segs.items():
        _need(seg.get("exit") is None or seg["exit"] in names, f"segment '{n}'",
              f"exit '{seg.get('exit')}' is not in 'exits'")


def _outputs_before(m, segs, head):
    """The image and the tensors produced by the segments before ``head``."""
    out = {m["input"]["name"]}
    for seg in segs.values():
        if seg is head:
            break
        out |= _outputs(seg)
    return out


def _check_files(files):
    _need_object(files, MANIFEST, "'files'")
    for rel, digest in files.items():
        check_rel_path(rel, "files")
        _need(isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
              f"files[{rel!r}]", f"expected a sha256 hex digest, got {digest!r}")


def _segment_entries(m, field, segs, what, inner=None):
    """(where, segment, value) of ``m[field][key][inner]``, a map keyed by the package's
    segments (``latency``, ``precisions``), each level checked to be an object."""
    entries = m.get(field)
    if entries is None:
        return
    _need_object(entries, MANIFEST, f"'{field}'")
    for key, entry in entries.items():
        where = f"{field}[{key!r}]"
        _need_object(entry, where, what)
        if inner is not None:
            _need_object(entry.get(inner), where, f"'{inner}'")
            entry = entry[inner]
        for seg, value in entry.items():
            _need(seg in segs, where, f"'{seg}' is not a segment of the package")
            yield where, seg, value


def _check_latency(m, segs):
    for where, seg, ms in _segment_entries(m, "latency", segs, "a latency entry"):
        _need(_is_number(ms) and ms >= 0, where, f"'{seg}' must be a non-negative finite number of ms, got {ms!r}")


def _check_precisions(m, segs):
    for where, seg, rel in _segment_entries(m, "precisions", segs, "a precision entry", inner="segments"):
        check_rel_path(rel, f"{where} segments[{seg!r}]")
        _need(rel in m["files"], where, f"file {rel!r} has no checksum in 'files'")
    exits = {ex["name"] for ex in m["exits"]}
    for prec, entry in (m.get("precisions") or {}).items():
        pooling = entry.get("policy_pooling")
        if pooling is None:
            continue
        where = f"precisions[{prec!r}] policy_pooling"
        _need_object(pooling, where, "an object of exit name -> 'shift' or 'pool'")
        for ex, form in pooling.items():
            _need(ex in exits, where, f"'{ex}' is not an exit of the package")
            _need(form in POOLINGS, where, f"exit '{ex}': expected one of {POOLINGS}, got {form!r}")


def engine_paths(m):
    """(field, path) of every package path the engine entries name (engines/build.py writes
    them: ``engines.<target>.<variant>.{dir, segments.<segment>.{file, source_onnx}}``, or a
    single build directly under the target). A build's ``timing_cache`` is not one of them: it
    records where the builder's cache was, possibly a user's path outside the package."""
    engines = m.get("engines")
    if engines is None:
        return
    _need_object(engines, MANIFEST, "'engines'")
    for target, entry in engines.items():
        _need_object(entry, f"engines[{target!r}]", "an engines entry")
        builds = {"": entry} if "segments" in entry else entry
        for variant, build in builds.items():
            where = f"engines[{target!r}]" + (f"[{variant!r}]" if variant else "")
            _need_object(build, where, "a build")
            if "dir" in build:
                yield f"{where} dir", build["dir"]
            _need_object(build.get("segments"), where, "'segments'")
            for seg, meta in build["segments"].items():
                if isinstance(meta, str):
                    yield f"{where} segments[{seg!r}]", meta
                    continue
                _need_object(meta, f"{where} segments[{seg!r}]", "an engine entry")
                for key in ("file", "plan", "source_onnx"):
                    # a plan may also be the build's settings (an object), not a path
                    if key in meta and (key != "plan" or isinstance(meta[key], str)):
                        yield f"{where} segments[{seg!r}] {key}", meta[key]


def _check_classes(m) -> None:
    """Optional ``classes``: one ``{"name", "color": [r, g, b]}`` per class id of the exits."""
    classes = m.get("classes")
    if classes is None:
        return
    n = max(ex["num_classes"] for ex in m["exits"])
    _need(isinstance(classes, list) and len(classes) == n, "classes",
          f"expected a list of {n} entries (one per class of the exits), got "
          f"{len(classes) if isinstance(classes, list) else type(classes).__name__}")
    for i, c in enumerate(classes):
        where = f"classes[{i}]"
        _need(isinstance(c, dict), where, "expected an object")
        _need(isinstance(c.get("name"), str) and c["name"].strip() != "", where,
              f"name must be a non-empty string, got {c.get('name')!r}")
        col = c.get("color")
        _need(isinstance(col, list) and len(col) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in col), where,
              f"color must be [r, g, b] with ints 0..255, got {col!r}")


def validate_manifest(m) -> None:
    """Check the manifest's structure; every message names the entry at fault."""
    _need(isinstance(m, dict), MANIFEST, "expected a JSON object")
    _need("schema_version" in m, MANIFEST, "missing 'schema_version'")
    _need(m["schema_version"] == SCHEMA_VERSION and _is_int(m["schema_version"]), MANIFEST,
          f"schema_version {m['schema_version']!r} is not supported (this mesc reads {SCHEMA_VERSION})")
    for key in ("input", "segments", "exits", "files"):
        _need(key in m, MANIFEST, f"missing '{key}'")
    _check_files(m["files"])
    if m.get("source") is not None:  # the typed view keeps it as a read-only mapping
        _need_object(m["source"], MANIFEST, "'source'")
    _check_input(m["input"])
    segs = _check_segments(m, m["files"])
    _check_exits(m, segs)
    _check_latency(m, segs)
    _check_precisions(m, segs)
    _check_classes(m)
    for where, rel in engine_paths(m):
        check_rel_path(rel, where)


def manifest_paths(m):
    """(field, path) of every package path a validated manifest names."""
    yield from ((f"files[{rel!r}]", rel) for rel in m["files"])
    yield from ((f"segment '{s['name']}' file", s["file"]) for s in m["segments"])
    for prec, entry in (m.get("precisions") or {}).items():
        yield from ((f"precisions[{prec!r}] segments[{s!r}]", rel) for s, rel in entry["segments"].items())
    yield from engine_paths(m)
