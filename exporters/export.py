"""``mesc export``: capture, split, write per-segment ONNX and the manifest, verify, atomically."""

from __future__ import annotations

import dataclasses
import time

from mesc import __version__
from mesc.errors import ExportError
from mesc.lazy import require
from mesc.package.manifest import MANIFEST, SCHEMA_VERSION
from mesc.policy import CONFIDENCE_KINDS, EDGE_BANDS
from mesc.package import Package, sha256_file
from mesc.progress import iterate
from mesc.package.staging import staging_dir, write_json_atomic
from mesc.timestamps import utc_now

DEFAULT_INPUT_SHAPE = (1, 3, 512, 1024)
DEFAULT_NORMALIZATION = {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# Placeholders until `mesc calibrate` chooses thresholds on the user's data.
DEFAULT_TH_PIX = 0.9
DEFAULT_TH_IMG = 0.85


@dataclasses.dataclass
class ExportOptions:
    input_shape: tuple | None = None
    exits: list | None = None  # positions in the model's exit sequence; None = all
    dynamic_batch: bool = False
    opset: int = 17
    policy: str | None = "top1"  # in-graph policy confidence: "top1", "entropy", or None
    edge: bool = True
    # the semantic edge band compiled into the graphs (one of EXPORT_EDGE_BANDS)
    edge_band: str = "paper"
    # "output": the policy reads the exit's logits at the output resolution (the MESS
    # definition); "native": at the head's own resolution before its final upsampling, with
    # windows in those pixels (os^2 times fewer pixels: the cheap choice on CPUs and small GPUs)
    policy_at: str = "output"
    strides: list | None = None  # policy output stride per kept exit; None = measured
    # the MESS windows' formulation (mesc.exporters.policy.pooling): "auto" compiles the one
    # cheapest on ``target`` where it is exact ("pool" for a TensorRT target, "shift" without one)
    policy_pooling: str = "auto"
    target: str | None = None  # the deployment target the heads are compiled for (mesc.targets)
    th_pix: float | None = None
    th_img: float | None = None
    verify: bool = True
    seed: int = 0
    verbose: bool = False  # show what torch prints while exporting (else only in a failure's message)
    # "export": torch.export (shape unpacking, views and dicts of states as they run); "fx": torch.fx
    # symbolic tracing, the fallback for a model torch.export cannot take
    capture: str = "export"
    strict: bool = False  # torch.export's strict mode (TorchDynamo) instead of running forward as Python
    # a `mesc calibrate --report` file: keep only its chosen exits, with its thresholds (the lean export)
    from_report: str | None = None
    # what the package will run at (the CLI's --precision): a --from-report report must have been
    # computed at the same precision
    precision: str = "fp32"
    # a classes file or data folder (mesc.datasets.read_class_names): stored in the
    # manifest's "classes" with a fixed palette, so every tool shows the same names and colours
    class_names: str | None = None
    # write no entry segment: uint8 images are then normalised on the host, as in packages written
    # before entries existed (the CLI's --host-normalize)
    host_normalize: bool = False


# The paper's band only: the wide one (what packages without a "band" key compiled) was kept
# for export only if it calibrated to a lower held-out latency, and it did not (docs/design.md).
EXPORT_EDGE_BANDS = ("paper",)


def _check_input_shape(shape) -> tuple:
    shape = tuple(shape)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ExportError(f"--input-shape must be four positive ints NxCxHxW, got {shape}")
    return shape


def _select_exits(exits, traced) -> list[int]:
    count = len(traced.exit_nodes)
    if exits is None:
        return list(range(count))
    bad = [e for e in exits if not 0 <= e < count]
    if bad:
        raise ExportError(f"--exits {bad} out of range: the model has {count} exits (0..{count - 1}: "
                          f"{', '.join(traced.exit_names)})")
    if not exits:
        raise ExportError("--exits selects no exit")
    selected = sorted(set(exits))
    deepest = [traced.exit_names[k] for k in selected if traced.points[k] == traced.points[selected[-1]]]
    if len(deepest) > 1:
        raise ExportError(f"--exits keeps {deepest}, candidate heads of one exit point, as the deepest exits; the "
                          "final exit point must have one head: keep a deeper exit or one of them")
    return selected


def _check_thresholds(opts):
    from mesc.ranges import check_real

    for key in ("th_pix", "th_img"):
        check_real(f"--{key.replace('_', '-')}", getattr(opts, key), 0.0, 1.0, optional=True, error=ExportError)
    if opts.policy is not None and opts.policy not in CONFIDENCE_KINDS:
        raise ExportError(f"policy must be one of {CONFIDENCE_KINDS} or None, got {opts.policy!r}")
    if opts.policy_at not in ("output", "native"):
        raise ExportError(f"--policy-at must be 'output' or 'native', got {opts.policy_at!r}")
    if opts.edge_band not in EXPORT_EDGE_BANDS:
        why = (": it gave no lower held-out latency than the paper's band at the 0.5 pp bound (docs/design.md); "
               "packages that have it still load and run" if opts.edge_band in EDGE_BANDS else "")
        raise ExportError(f"--edge-band must be one of {EXPORT_EDGE_BANDS}, got {opts.edge_band!r}{why}")
    if opts.capture not in ("export", "fx"):
        raise ExportError(f"--capture must be 'export' or 'fx', got {opts.capture!r}")
    if opts.strict and opts.capture != "export":
        raise ExportError("--strict is torch.export's strict mode; it goes with --capture export")
    if opts.policy_at == "native" and not opts.policy:
        raise ExportError("--policy-at native needs the in-graph policy (--policy top1 or entropy)")
    from mesc.exporters.policy.pooling import check_pooling_choice
    from mesc.targets import get_target

    check_pooling_choice(opts.policy_pooling)
    if opts.target is not None:
        get_target(opts.target)
    if opts.from_report is not None:
        given = [o for o, v in (("--exits", opts.exits), ("--th-pix", opts.th_pix), ("--th-img", opts.th_img))
                 if v is not None]
        if given:
            raise ExportError(f"--from-report chooses the exits and their thresholds; drop {', '.join(given)}")
    from mesc.exporters.onnx_io import check_opset

    check_opset(opts.opset)


@dataclasses.dataclass
class _Plan:
    """The traced model cut into segments for the kept exits, and each kept exit's policy."""

    traced: object
    selected: list  # kept exits, as positions in the model's exit sequence
    segments: list
    names: dict  # fx node -> ONNX tensor name
    policy_src: dict  # kept-exit position -> (node the policy reads, its tensor name)
    policy: list  # kept-exit position -> policy settings, as stored in the manifest

    def exit_name(self, i: int) -> str:
        return self.traced.exit_names[self.selected[i]]

    def segment(self, kind: str, i: int):
        return next((s for s in self.segments if s.kind == kind and s.exit == i), None)

    def head(self, i: int):
        """Kept exit ``i``'s head. The partition refuses the models that leave an exit without
        one; this names the cause should any other shape of model slip through."""
        head = self.segment("head", i)
        if head is None:
            name = self.exit_name(i)
            raise ExportError(f"exit {name}'s logits feed another exit, so the exit has no layers of its own to "
                              f"put in a head segment; compute the other exit from the features before {name}'s "
                              f"last layer, not from its logits")
        return head


def export(model=None, out=None, weights=None, num_classes=None, options: ExportOptions | None = None,
           force: bool = False, progress: bool = False) -> Package:
    """Split ``model`` (a spec string or an nn.Module) into a package at ``out``.

    Nothing is written unless every segment exports, checks and (by default) reproduces the
    eager model's exits; an existing ``out`` is replaced only with ``force``.
    """
    from mesc.exporters.model_spec import load_model, model_file
    from mesc.package.outputs import check_dir_output

    from mesc.ranges import check_int

    opts = options or ExportOptions()
    _check_thresholds(opts)
    check_int("--num-classes", num_classes, 1, optional=True, error=ExportError)
    if out is None:
        raise ExportError("no output directory given (-o DIR)")
    chosen = None
    if opts.from_report is not None:
        from mesc.exporters.lean import read_report

        chosen = read_report(opts.from_report)
    check_dir_output(out, "package", force,
                     inputs=[("--weights", weights), ("--model", model_file(model)),
                             ("--from-report", opts.from_report), ("--class-names", opts.class_names)])
    names = _class_names(opts.class_names)
    torch = require("torch", purpose="mesc export")
    from mesc.exporters.trace import trace_model

    t0 = time.perf_counter()
    net, source = load_model(model, weights=weights, num_classes=num_classes)
    shape = _check_input_shape(opts.input_shape or getattr(net, "default_input_shape", DEFAULT_INPUT_SHAPE))
    if chosen is not None:  # before the capture: a report of another package is refused in seconds
        from mesc.exporters.lean import check_identity, export_identity

        check_identity(chosen, export_identity(source, weights, shape, opts))
    gen = torch.Generator().manual_seed(opts.seed)
    example = torch.randn(shape, generator=gen)
    traced = trace_model(net, example, capture=opts.capture, strict=opts.strict, dynamic_batch=opts.dynamic_batch,
                         verbose=opts.verbose)
    plan = _plan(traced, opts, chosen)
    configs = _exit_configs(net, traced)

    normalization = getattr(net, "input_normalization", DEFAULT_NORMALIZATION)
    with staging_dir(out, force=force) as tmp:
        (tmp / "onnx").mkdir()
        seg_entries, files = [], {}
        for seg in iterate(plan.segments, "export: write segments", "segment", show=progress):
            entry = _write_segment(plan, seg, opts, tmp)
            files[entry["file"]] = sha256_file(tmp / entry["file"])
            seg_entries.append(entry)
        if not opts.host_normalize:  # written after the model's segments, whose failures say more; run first
            entry = _write_entry(shape, normalization, opts, tmp)
            files[entry["file"]] = sha256_file(tmp / entry["file"])
            seg_entries.insert(0, entry)
        if chosen is not None:
            source = dict(source, from_report=chosen.path)
        manifest = _manifest(plan, opts, normalization, source, weights, shape, seg_entries, files, configs)
        if names is not None:
            manifest["classes"] = _classes_entry(names, manifest["exits"], opts.class_names)
        write_json_atomic(tmp / MANIFEST, manifest)
        pkg = Package.load(tmp)
        if opts.verify:
            from mesc.exporters.verify import verify_against_model

            batches = [shape[0], shape[0] + 1] if opts.dynamic_batch else [shape[0]]
            manifest["verification"] = verify_against_model(pkg, net, shape, batches, seed=opts.seed + 1)
        manifest["export_seconds"] = round(time.perf_counter() - t0, 2)
        write_json_atomic(tmp / MANIFEST, manifest)
    return Package.load(out)


def _class_names(path) -> list | None:
    if path is None:
        return None
    from mesc.datasets import read_class_names

    try:
        return read_class_names(path)
    except ValueError as err:
        raise ExportError(f"--class-names {err}") from None


def _classes_entry(names: list, exits: list, path) -> list:
    """The manifest's ``classes``: each name with its fixed colour (mesc's palette by class id)."""
    from mesc.runtime.images import palette

    n = max(ex["num_classes"] for ex in exits)
    if len(names) != n:
        raise ExportError(f"--class-names {path} names {len(names)} classes but the model's exits have {n}")
    flat = palette(n)
    return [{"name": name, "color": flat[3 * i:3 * i + 3]} for i, name in enumerate(names)]


def _plan(traced, opts: ExportOptions, chosen=None) -> _Plan:
    """Choose the kept exits (``--exits``, or a calibration report's ``chosen``), the tensors
    their policies read, and cut the graph accordingly."""
    from mesc.exporters.partition import partition

    if chosen is not None:
        from mesc.exporters.lean import select

        selected = select(chosen, traced)
    else:
        selected = _select_exits(opts.exits, traced)
    if opts.strides is not None and len(opts.strides) != len(selected):
        raise ExportError(f"--stride gives {len(opts.strides)} values for {len(selected)} kept exits")
    policy_src = _policy_sources(traced, selected, native=opts.policy_at == "native")
    extra = {node: tname for node, tname in policy_src.values() if tname.endswith("_native_logits")}
    # with the policy at native resolution, the head's final upsampling and the labels move to a
    # tail segment that runs only for the images leaving at that exit
    tails = {i: node for i, (node, tname) in policy_src.items() if tname.endswith("_native_logits")}
    segments, names = partition(traced, selected, extra_outputs=extra, tails=tails)
    thresholds = chosen.thresholds if chosen is not None else {}
    plan = _Plan(traced, selected, segments, names, policy_src, _policy_settings(traced, selected, opts, thresholds))
    _check_policy_reads_its_head(plan)
    return plan


def _policy_sources(traced, selected: list[int], native: bool) -> dict:
    """Kept-exit position -> (node, tensor name) of the logits its policy reads."""
    policy_src = {}
    for i, k in enumerate(selected):
        name = traced.exit_names[k]
        src = traced.native_nodes[k] if native else traced.exit_nodes[k]
        policy_src[i] = (src, f"{name}_native_logits" if src is not traced.exit_nodes[k] else f"{name}_logits")
    return policy_src


def _check_policy_reads_its_head(plan: _Plan) -> None:
    for i, (node, tname) in plan.policy_src.items():
        head = plan.head(i)
        if node is not plan.traced.exit_nodes[plan.selected[i]] and node not in head.nodes:
            raise ExportError(f"exit {plan.exit_name(i)}: its logits before upsampling are shared "
                              "with deeper exits, so the policy cannot read them in the exit's head; use --policy-at output")


def _policy_settings(traced, selected: list[int], opts: ExportOptions, thresholds: dict) -> list[dict]:
    """Each kept exit's policy; ``thresholds`` (exit name -> th_pix, th_img: a report's
    choice) override the options' thresholds."""
    from mesc.exporters.policy.pooling import choose_pooling, with_pooling

    settings = []
    for i, k in enumerate(selected):
        # windows are counted in the pixels the policy reads: output pixels, or native ones
        stride = opts.strides[i] if opts.strides else (1 if opts.policy_at == "native" else traced.strides[k])
        settings.append({"confidence": opts.policy or "top1", "edge": bool(opts.edge), "band": opts.edge_band,
                         "stride": int(stride),
                         "at": opts.policy_at,
                         "th_pix": opts.th_pix if opts.th_pix is not None else DEFAULT_TH_PIX,
                         "th_img": opts.th_img if opts.th_img is not None else DEFAULT_TH_IMG,
                         **thresholds.get(traced.exit_names[k], {})})
        if opts.policy:
            where = f"exit '{traced.exit_names[k]}'"
            settings[-1] = with_pooling(settings[-1], choose_pooling(settings[-1], opts.policy_pooling, opts.target,
                                                                     where))
    return settings


def _write_segment(plan: _Plan, seg, opts: ExportOptions, tmp) -> dict:
    """Export one segment to ONNX (with its exit's policy or labels appended), save it under
    ``tmp`` and return its manifest entry."""
    from mesc.exporters import flops as flops_mod
    from mesc.exporters.onnx_io import check, export_module, io_specs, onnx

    in_names, out_names = seg.tensor_names(plan.names)
    args = [plan.traced.values[n.name] for n in seg.inputs]
    where = f"segment {seg.name}"
    model_proto = export_module(seg.gm, args, in_names, out_names, opts.opset, opts.dynamic_batch, where,
                                opts.verbose)
    exit_name = plan.exit_name(seg.exit)
    if seg.kind == "head" and opts.policy:
        from mesc.exporters.policy.mess import append_policy
        from mesc.policy import pooling_of

        p = plan.policy[seg.exit]
        model_proto = append_policy(model_proto, logits=plan.policy_src[seg.exit][1], prefix=exit_name,
                                    confidence=p["confidence"], edge=p["edge"], stride=p["stride"], band=p["band"],
                                    pooling=pooling_of(p), labels=plan.segment("tail", seg.exit) is None)
    elif seg.kind == "tail":
        from mesc.exporters.policy.graph import append_labels

        model_proto = append_labels(model_proto, logits=f"{exit_name}_logits", prefix=exit_name)
    model_proto = check(model_proto, where)
    rel = f"onnx/{seg.name}.onnx"
    onnx.save(model_proto, str(tmp / rel))
    ins, outs = io_specs(model_proto)
    return {
        "name": seg.name, "kind": seg.kind, "exit": exit_name, "file": rel,
        "inputs": ins, "outputs": outs,
        "flops": flops_mod.count(seg.gm, args),
    }


def _write_entry(shape: tuple, normalization: dict, opts: ExportOptions, tmp) -> dict:
    """Write the entry segment (uint8 N x H x W x C -> the normalised float input, see
    :mod:`mesc.exporters.entry`) and return its manifest entry."""
    from mesc.exporters.entry import ENTRY, entry_flops, entry_model
    from mesc.exporters.onnx_io import check, io_specs, onnx
    from mesc.exporters.partition import IMAGE

    model_proto = check(entry_model(IMAGE, shape, normalization, opts.opset, opts.dynamic_batch), "the entry segment")
    rel = f"onnx/{ENTRY}.onnx"
    onnx.save(model_proto, str(tmp / rel))
    ins, outs = io_specs(model_proto)
    return {"name": ENTRY, "kind": "entry", "exit": None, "file": rel, "inputs": ins, "outputs": outs,
            "flops": entry_flops(shape)}


def _exit_configs(net, traced) -> list | None:
    """Each model exit's head configuration (``model.exit_configs``, flattened like the exits) as
    the manifest stores it (None for a head it gives none), or None where the model does not tell."""
    configs = getattr(net, "exit_configs", None)
    if configs is None:
        return None
    configs = list(configs)
    if len(configs) != len(traced.exit_nodes):
        raise ExportError(f"{type(net).__name__}.exit_configs has {len(configs)} entries but its forward returns "
                          f"{len(traced.exit_nodes)} exits ({', '.join(traced.exit_names)}); it must give one "
                          "configuration per exit, candidates included, in the same order")
    out = []
    for name, cfg in zip(traced.exit_names, configs):
        d = cfg.to_dict() if callable(getattr(cfg, "to_dict", None)) else cfg
        if d is None:  # a head outside the exit space (MiT-B0's all-MLP decoder)
            out.append(None)
            continue
        if not isinstance(d, dict):
            raise ExportError(f"{type(net).__name__}.exit_configs: the entry for {name} is {type(cfg).__name__}; "
                              "expected an ExitConfig (or a dict)")
        out.append(dict(d))
    return out


def _candidate_fields(plan: _Plan, i: int, configs) -> dict:
    """Kept exit ``i``'s exit point, candidate index, head configuration and enabled flag. Only a
    model with candidate heads gets point and candidate; the first kept candidate of each point
    is enabled (an uncalibrated package runs like a fixed-head model), the others are not."""
    traced, k = plan.traced, plan.selected[i]
    fields = {} if configs is None or configs[k] is None else {"config": configs[k]}
    if not traced.has_candidates:
        return fields
    first = i == 0 or traced.points[plan.selected[i - 1]] != traced.points[k]
    return {"point": traced.points[k], "candidate": traced.candidates[k], **fields, "enabled": first}


def _exit_entries(plan: _Plan, opts: ExportOptions, configs=None) -> list[dict]:
    exits = []
    for i, k in enumerate(plan.selected):
        name = plan.traced.exit_names[k]
        logits = plan.traced.values[plan.traced.exit_nodes[k].name]
        tail = plan.segment("tail", i)
        exits.append({
            "name": name, "index": k, "segment": plan.head(i).name,
            "tail": tail.name if tail else None, "logits": f"{name}_logits",
            "num_classes": int(logits.shape[1]), "output_stride": int(plan.traced.strides[k]),
            "labels": f"{name}_labels" if opts.policy else None,
            "confidence": f"{name}_confidence" if opts.policy else None,
            "th_pix_input": f"{name}_th_pix" if opts.policy else None,
            "policy_logits": plan.policy_src[i][1],
            "policy": plan.policy[i],
            **_candidate_fields(plan, i, configs),
        })
    return exits


def _manifest(plan: _Plan, opts: ExportOptions, normalization: dict, source: dict, weights, shape: tuple,
              seg_entries: list, files: dict, configs=None) -> dict:
    import torch

    from mesc.exporters.entry import entry_record
    from mesc.exporters.onnx_io import onnx
    from mesc.exporters.partition import IMAGE

    return {
        "schema_version": SCHEMA_VERSION,
        "mesc_version": __version__,
        "created": utc_now(),
        "source": dict(source, weights_sha256=sha256_file(weights) if weights else None,
                       torch=torch.__version__, onnx=onnx.__version__, opset=opts.opset,
                       model_exits=len(plan.traced.exit_nodes), selected_exits=plan.selected,
                       capture=opts.capture),
        "input": {"name": IMAGE, "shape": ["batch" if opts.dynamic_batch else shape[0], *shape[1:]],
                  "dtype": "float32", "dynamic_batch": bool(opts.dynamic_batch),
                  "normalization": normalization,
                  **({} if opts.host_normalize else {"entry": entry_record()})},
        "segments": seg_entries,
        "exits": _exit_entries(plan, opts, configs),
        "files": files,
        "engines": {},
        "latency": {},
    }

