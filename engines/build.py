"""``mesc build``: one TensorRT engine per segment for a target and precision, into the package.

Engines go to ``engines/<target>-<precision>[-dla<N>]/`` (``<segment>.plan`` plus
``<segment>.json`` with its build metadata and layer placement) and are recorded under the
manifest's ``engines[<target>][<precision>[-dla<N>]]``. Everything is built in a temporary
directory inside the package and moved in at the end, so a failed build leaves nothing.

The exit heads' MESS windows are built in the target's form (:mod:`mesc.exporters.policy.pooling`):
where the FP32 heads the engines come from compute them otherwise, the recompiled heads are
written beside the engines (``<segment>.onnx``, the engines' ``source_onnx``; the package's own
``onnx/`` stays as it is) and the form is recorded per exit under the build's ``policy_pooling``.
Prepared FP16/INT8 graphs are built as they are (``mesc prepare --target`` compiles their form).

A dynamic-batch package gets engines for batches 1..``max_batch`` (:mod:`mesc.engines.profiles`).
The timing cache is kept per target, TensorRT version and compute capability: TensorRT refuses
a cache from another version or another GPU.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from mesc.engines.profiles import batch_range, segment_shapes
from mesc.engines.targets import BuildPlan, check_onnx_ops, plan_build
from mesc.errors import MescError
from mesc.lazy import require
from mesc.package.outputs import refuse_inside_generated
from mesc.package import Package, sha256_file
from mesc.targets import check_build_request, get_target
from mesc.timestamps import utc_now


def source_graphs(pkg, plan: BuildPlan) -> dict[str, str]:
    """The ONNX file (package-relative) each segment's engine is built from.

    FP16 and explicit INT8 come from ``mesc prepare``'s graphs (strong typing needs them; on
    weak typing they keep the policy tail FP32 and the Q/DQ scales calibrated per segment).
    Only FP16 on weakly typed TensorRT can do without them (the FP16 flag on the FP32 graph):
    there the builder pins the policy's layers to FP32 itself (:func:`policy_nodes`), as it does
    on every weakly typed FP16/INT8 build, whose flags would otherwise let TensorRT lower them.
    """
    if plan.source == "fp32":
        return {seg.name: seg.file for seg in pkg.segments}
    from mesc.runtime.backends.onnxrt.precisions import prepare_command, prepared_segments

    prepared = prepared_segments(pkg, plan.source, error=MescError)
    if prepared:
        return prepared
    if plan.source == "fp16" and not plan.strongly_typed:
        return {seg.name: seg.file for seg in pkg.segments}
    raise MescError(f"{pkg.root}: no prepared {plan.source} graphs; run '{prepare_command(pkg, plan.source)}' "
                    f"first, or pass --calib-data to 'mesc build'")


def prepared_windows(pkg, source: str) -> dict:
    """exit name -> the MESS windows the ``source`` graphs ("fp32" or a prepared precision)
    compute, for the exits whose heads have windows."""
    from mesc.exporters.policy.pooling import package_poolings

    entry = pkg.precisions.get(source) if source != "fp32" else None
    recorded = dict(entry.policy_pooling) if entry is not None else {}
    return {ex: recorded.get(ex, form) for ex, form in package_poolings(pkg).items()}


def pooling_notes(pkg, plan: BuildPlan, want: dict) -> list:
    """What to run where the prepared graphs an engine is built from compute the MESS windows in
    another form than ``want`` (exit name -> form; the engine is correct either way). FP32
    heads are recompiled here instead (:func:`build_engines`)."""
    if plan.source == "fp32":
        return []
    have = prepared_windows(pkg, plan.source)
    off = sorted(ex for ex in want if have.get(ex) != want[ex])
    if not off:
        return []
    return [f"exits {', '.join(off)} of the prepared {plan.source} graphs compute the policy's windows with "
            f"'{have[off[0]]}', not '{want[off[0]]}' (the same results; 'pool' is fewer kernels on a GPU): "
            f"'mesc prepare {pkg.root} --precision {plan.source} --target {plan.target}' compiles it"]


def entry_plan(plan: BuildPlan) -> BuildPlan:
    """How the entry segment (uint8 images -> the normalised float input) builds within ``plan``:
    FP32 on the GPU whatever the build's precision, so that its float32 division rounds as the
    host's normalisation does (an FP16 or INT8 flag would let TensorRT run it in lower precision;
    uint8 network I/O is a GPU feature, and the entry is too small to be worth a DLA)."""
    return dataclasses.replace(plan, precision="fp32", fp16_flag=False, int8_flag=False, implicit_int8=False,
                               dla_core=None, gpu_fallback=False,
                               notes=plan.notes + ("the entry segment builds FP32 on the GPU",))


def policy_nodes(pkg, seg, onnx_path):
    """(every ONNX node -> its outputs, the exit policy's nodes) of the graph ``onnx_path`` that
    segment ``seg``'s engine is built from, by the names onnx-tensorrt gives their layers; None
    where the segment has no policy. The nodes are those ``mesc prepare`` keeps FP32."""
    from mesc.calibration.precision.nodes import exit_tails
    from mesc.runtime.backends.trt.policy_precision import parser_node_name

    model = require("onnx").load(str(onnx_path), load_external_data=False)
    for node in model.graph.node:
        node.name = parser_node_name(node)
    tail = exit_tails(pkg, model, seg)
    if not tail:
        return None
    return {n.name: list(n.output) for n in model.graph.node}, set(tail)


def _layer_device(layer: dict) -> str:
    # '{ForeignNode[...]}' names both DLA subgraphs and GPU Myelin subgraphs ("LayerType":
    # "Myelin"): only the layer type says DLA.
    kind = str(layer.get("LayerType") or "")
    if kind.upper() == "DLA":
        return "DLA"
    return "unknown" if not kind and "ForeignNode" in layer.get("Name", "") else "GPU"


def summarize_layers(info: dict) -> dict:
    """Count the engine's layers per device and per precision from the inspector's JSON.

    Precision is read from the layer's output formats ('Row major linear FP32', 'Channel major
    FP16 format', 'Int8 ...').
    """
    by_device, by_precision, layers = {}, {}, []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # profiling verbosity below DETAILED gives names only
            layers.append({"name": layer})
            continue
        name = layer.get("Name", "")
        device = _layer_device(layer)
        outs = layer.get("Outputs") or []
        fmt = " ".join(str(o.get("Format/Datatype", "")) for o in outs if isinstance(o, dict))
        prec = next((p for p in ("Int8", "FP16", "Half", "FP32", "Float", "Int32", "Int64", "Bool")
                     if p.lower() in fmt.lower()), "unknown")
        prec = {"Half": "FP16", "Float": "FP32"}.get(prec, prec)
        by_device[device] = by_device.get(device, 0) + 1
        by_precision[prec] = by_precision.get(prec, 0) + 1
        layers.append({"name": name, "type": layer.get("LayerType"), "device": device, "precision": prec,
                       "tactic": layer.get("TacticName")})
    return {"by_device": by_device, "by_precision": by_precision, "layers": layers}


def timing_cache_name(target: str, facts: dict) -> str:
    """'orin.trt10.3.0.sm87.timing.cache': one cache per TensorRT version and GPU."""
    cc = str(facts["compute_capability"]).replace(".", "")
    return f"{target}.trt{facts['trt_version']}.sm{cc}.timing.cache"


def _prepare_if_needed(pkg, plan, calib_data, method, max_images, say):
    have = pkg.precisions
    if plan.source in have or plan.source == "fp32":
        return pkg
    if plan.source == "int8" and not calib_data:
        return pkg  # source_graphs names the missing step
    from mesc.calibration.precision import prepare

    say(f"preparing {plan.source} graphs")
    prepare(pkg.root, (plan.source,), calib_data=calib_data, method=method, max_images=max_images, progress=say,
            target=plan.target)
    return Package.load(pkg.root)


def build(package, target: str, precision: str, calib_data=None, dla_core: int | None = None,
          workspace_mb: int | None = None, timing_cache=None, allow_slow: bool = False,
          method: str = "minmax", max_images: int = 64, progress=None, max_batch: int | None = None,
          tf32: bool = True, policy_pooling: str = "auto") -> dict:
    """Build every segment's engine; returns the manifest entry written for them.
    ``policy_pooling`` ("auto", "shift", "pool"): the heads' MESS windows; "auto" is the
    target's form where exact."""
    from mesc.exporters.policy.pooling import HeadRepooler, check_pooling_choice, package_poolings
    from mesc.ranges import check_int

    check_pooling_choice(policy_pooling)
    check_int("--max-images", max_images, 1)
    check_int("--dla-core", dla_core, 0, optional=True)
    check_int("--workspace", workspace_mb, 1, optional=True)
    check_int("--max-batch", max_batch, 1, optional=True)
    say = progress or (lambda msg: None)
    pkg = Package.load(package)
    tgt = get_target(target)
    check_build_request(tgt, precision, None, dla_core, None, allow_slow)  # argument errors before TRT loads
    refuse_inside_generated(pkg.root, ["engines"], [("--calib-data", calib_data)])
    batch = batch_range(pkg.input, tgt, max_batch, dla=dla_core is not None)
    from mesc.runtime.backends.trt import compat

    facts = compat.engine_facts()  # recorded with every plan; the runtime's loader checks them
    version = facts["trt_version"]
    compat.check_polygraphy(version)
    plan = plan_build(tgt, precision, version, dla_core, facts["compute_capability"], allow_slow, workspace_mb,
                      tf32=tf32)
    for note in plan.notes:
        say(f"note: {note}")
    if plan.implicit_int8 and not calib_data:
        raise MescError("INT8 on DLA with TensorRT 8.x is calibrated implicitly: pass --calib-data IMAGES")
    pkg = _prepare_if_needed(pkg, plan, calib_data, method, max_images, say)
    sources = source_graphs(pkg, plan)
    want = package_poolings(pkg, policy_pooling, plan.target)
    for note in pooling_notes(pkg, plan, want):
        say(f"note: {note}")
    heads = HeadRepooler(pkg, want) if plan.source == "fp32" else None
    onnx = require("onnx")
    for rel in sources.values():
        check_onnx_ops(onnx.load(str(pkg.path(rel)), load_external_data=False), version, rel)
    feeds = {}
    if plan.implicit_int8:
        from mesc.calibration.precision.feeds import segment_inputs
        from mesc.calibration.precision.images import load_calibration_batches

        images, _ = load_calibration_batches(calib_data, pkg.input, max_images=max_images)
        feeds = segment_inputs(pkg, images)
    return build_engines(pkg, plan, facts, sources, feeds, timing_cache, say, batch, heads=heads)


def build_engines(pkg, plan: BuildPlan, facts: dict, sources: dict, feeds=None, timing_cache=None,
                  say=None, batch: tuple | None = None, heads=None) -> dict:
    """Build the engines ``plan`` asks for from ``sources`` (segment -> package-relative ONNX) in
    a staging directory of the package and install them; returns their manifest entry.
    ``facts`` are :func:`mesc.runtime.backends.trt.compat.engine_facts` of this machine;
    ``batch`` the (min, opt, max) batch of a dynamic-batch package's profile
    (:func:`mesc.engines.profiles.batch_range`); ``heads`` a
    :class:`~mesc.exporters.policy.pooling.HeadRepooler` whose recompiled heads the engines are
    built from instead (written beside them)."""
    from mesc.runtime.backends.trt import compat

    say = say or (lambda msg: None)
    feeds = feeds or {}
    version = facts["trt_version"]
    timing_cache = Path(timing_cache) if timing_cache else pkg.path(f"engines/{timing_cache_name(plan.target, facts)}")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    rel_dir = f"engines/{plan.target}-{plan.variant}"
    with pkg.staging(rel_dir) as tmp:
        segments = {}
        for seg in pkg.segments:
            name, src = seg.name, sources[seg.name]
            src_path = pkg.path(src)
            if heads is not None and heads.changes(seg):
                say(f"{name}: the policy's windows recompiled for {plan.target} (beside the engines)")
                onnx = require("onnx")
                src, src_path = f"{rel_dir}/{name}.onnx", tmp / f"{name}.onnx"
                onnx.save(heads(onnx.load(str(pkg.path(sources[name]))), seg), str(src_path))
            seg_plan = entry_plan(plan) if seg.kind == "entry" else plan
            say(f"build {name} ({seg_plan.variant}, TensorRT {version})")
            t0 = time.perf_counter()
            cache = tmp / f"{name}.calib.cache" if seg_plan.implicit_int8 else None
            policy = policy_nodes(pkg, seg, src_path) if seg_plan.pins_policy_fp32 else None
            built = compat.build_engine(src_path, seg_plan, tmp / f"{name}.plan", feeds.get(name), cache,
                                        str(timing_cache), shapes=segment_shapes(seg, batch), policy=policy)
            pinned = built.get("policy_fp32_layers")
            if pinned is not None:
                say(f"{name}: {pinned} policy layers kept FP32")
            meta = {
                "segment": name, "file": f"{rel_dir}/{name}.plan", "precision": seg_plan.precision,
                "plan": seg_plan.as_dict(),
                **facts, "source_onnx": src, "source_sha256": sha256_file(src_path),
                "io": built["io"], "build_seconds": round(time.perf_counter() - t0, 2),
                "placement": {k: v for k, v in summarize_layers(built["layers"]).items() if k != "layers"},
            }
            (tmp / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
            (tmp / f"{name}.layers.json").write_text(
                json.dumps(summarize_layers(built["layers"])["layers"], indent=1) + "\n")
            if pinned is not None:
                meta["policy_fp32_layers"] = pinned  # FP16/INT8 on weak typing: the policy's layers pinned FP32
            segments[name] = {k: meta[k] for k in ("file", "source_onnx", "source_sha256", "io", "placement",
                                                   "policy_fp32_layers") if k in meta}
        entry = {
            "dir": rel_dir, "target": plan.target, "precision": plan.precision, "dla_core": plan.dla_core,
            **facts, "plan": plan.as_dict(), "timing_cache": timing_cache_record(pkg, timing_cache),
            "batch": dict(zip(("min", "opt", "max"), batch)) if batch else None,
            "built": utc_now(),
            "segments": segments,
            # exit -> the MESS windows the engines compute (shift/pool)
            "policy_pooling": dict(heads.chosen) if heads is not None else prepared_windows(pkg, plan.source),
        }
        pkg.install_dir(tmp, rel_dir, update=lambda m: m.setdefault("engines", {}).setdefault(
            plan.target, {}).__setitem__(plan.variant, entry))
    return entry


def timing_cache_record(pkg, timing_cache: Path) -> str:
    """How the manifest names the timing cache a build used: package-relative when it lies in
    the package (the default), so a moved package still names it correctly; else the user's
    absolute path. Either way it is a note for people, not a package file: it has no checksum
    (TensorRT rewrites it on every build) and manifest validation does not confine it
    (:func:`mesc.package.manifest.engine_paths` leaves it out)."""
    resolved, root = timing_cache.resolve(), pkg.root.resolve()
    if resolved == root or root in resolved.parents:  # Path.is_relative_to is 3.9+
        return resolved.relative_to(root).as_posix()
    return str(resolved)

