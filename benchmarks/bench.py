"""``mesc bench``: per-segment and per-exit latency of a package, against its baselines.

What one bench does, on one backend and device (figures are milliseconds, statistics over
``iters`` rounds after ``warmup`` untimed ones, every variant timed once a round in a rotating
order so that drift hits all alike):

* ``segments``: one walk over every segment in execution order (the heads of disabled exits
  included), the pipeline's own steps (:meth:`Pipeline.time_segments`); each segment timed on
  the device clock (CUDA events where the runner has a stream, else the host clock with
  synchronisation), and after each head the *decision*: the copy of the confidence to the host
  (4 bytes an image; the logits plus the numpy policy where the package has no in-graph policy)
  timed apart;
* ``exit:<name>``: the budgeted pipeline call that reaches and takes that exit (the segments of
  ``Package.segments_until``), upload to labels on the host; set beside the sum of its segments'
  medians as a check;
* baselines: ``monolithic`` (the final-exit path composed into one graph, one engine on
  TensorRT, run by the same runtime), ``never_exit`` (mesc input-dependent with thresholds no
  image meets: every enabled exit's head and policy run) and ``eager`` (the source PyTorch model
  with the policy in numpy at every exit) beside ``eager_forward`` (its forward and the final
  labels on the host, no policy: on CUDA the numpy policy on full-size logits dominates
  ``eager``), the eager ones timed after everything else in rounds of their own, since a torch
  run slows whatever runs next;
* with images, the input-dependent pipeline (enabled exits only) against final-only, image by
  image, each timed from the normalised batch as the ``exit:<name>`` rounds are.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from mesc.benchmarks import harness
from mesc.errors import MescError
from mesc.package.schema import Tensor
from mesc.policy import NEVER_EXIT, policy_kind
from mesc.progress import bar as progress_bar
from mesc.runtime.backends.onnxrt.loader import SPIN_MODES
from mesc.runtime.clock import HostClock, segment_clock
from mesc.timestamps import utc_now

BACKENDS = ("onnxruntime", "tensorrt")
BASELINES = ("monolithic", "eager")
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "int32": 4, "int64": 8, "int8": 1, "uint8": 1, "bool": 1,
                "double": 8, "float64": 8}


@dataclasses.dataclass
class BenchOptions:
    backend: str = "onnxruntime"
    device: str = "cpu"
    target: str | None = None
    precision: str | None = None
    batch: int = 1
    warmup: int = 3
    iters: int = 20
    data: str | None = None
    resize: bool = False
    baselines: tuple = BASELINES
    threads: int | None = None
    seed: int = 0
    cuda_graphs: bool = True
    spin: str = "run"  # how onnxruntime's intra-op threads wait: one of SPIN_MODES


def latency_key(backend: str, device: str, target: str | None = None, variant: str | None = None) -> str:
    """The ``manifest["latency"]`` key ``mesc calibrate --latency-key`` takes: backend/device,
    and the engine build (TensorRT: target/precision) or prepared precision (onnxruntime)."""
    key = f"{backend}/{device}"
    if backend == "tensorrt":
        return key + f"/{target}/{variant}"
    return key + (f"/{variant}" if variant else "")


# Checks that need nothing loaded -------------------------------------------------------------

def _check_counts(opts: BenchOptions) -> None:
    """The counts, before the package is read (the CLI declares the same ranges)."""
    from mesc.ranges import check_int

    check_int("--batch", opts.batch, 1)
    check_int("--warmup", opts.warmup, 0)
    check_int("--iters", opts.iters, 1)
    check_int("--threads", opts.threads, 1, optional=True)
    if opts.spin not in SPIN_MODES:
        raise MescError(f"--spin must be one of {', '.join(SPIN_MODES)}, got {opts.spin!r}")


def _check_request(pkg, opts: BenchOptions):
    from mesc.runtime.devices import parse_device

    if opts.backend not in BACKENDS:
        raise MescError(f"unknown backend {opts.backend!r}; expected one of {', '.join(BACKENDS)}")
    dev = parse_device(opts.device)
    bad = set(opts.baselines) - set(BASELINES)
    if bad:
        raise MescError(f"unknown baseline(s) {sorted(bad)}; expected {', '.join(BASELINES)} or none")
    n = pkg.input.shape[0]
    if isinstance(n, int) and not pkg.input.dynamic_batch and opts.batch > n:
        raise MescError(f"--batch {opts.batch} is larger than the package's static batch of {n}; "
                        f"re-export with --dynamic-batch (or --input-shape {opts.batch}x...) to bench it")
    target = variant = None
    if opts.backend == "tensorrt":
        from mesc.targets import get_target
        from mesc.runtime.backends.trt.loader import choose_target, choose_variant

        if opts.target is not None:
            get_target(opts.target)  # an unknown target name fails here, naming the known ones
        if not dev.is_cuda:
            raise MescError(f"TensorRT runs on CUDA devices only, not {dev}; use --device cuda:0")
        target = choose_target(pkg.manifest, opts.target, None)
        variant = choose_variant(pkg.manifest, target, opts.precision)
    elif opts.target is not None:
        raise MescError("--target: targets select TensorRT engines; use --backend tensorrt (the onnxruntime "
                        "backend runs the package's ONNX segments, --precision the ones 'mesc prepare' wrote)")
    elif opts.precision not in (None, "fp32"):
        from mesc.runtime.backends.onnxrt.precisions import prepared_graphs

        prepared_graphs(pkg, opts.precision)  # an unprepared precision fails here, naming the command
        variant = opts.precision
    return dev, target, variant


def _max_engine_batch(runner) -> int | None:
    """The largest batch every segment's engine takes (TensorRT): a static batch dimension, or
    the maximum of the optimisation profile where the batch is dynamic."""
    engines = getattr(runner, "engines", None)
    if not engines:
        return None
    trt, best = runner.trt, None
    for engine in engines.values():
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT or name.endswith("_th_pix"):
                continue
            n = engine.get_tensor_shape(name)[0]
            b = int(engine.get_tensor_profile_shape(name, 0)[2][0]) if n == -1 else int(n)
            best = b if best is None else min(best, b)
    return best


def load_images(data, pipe, resize: bool = False, say=print) -> list:
    """The readable images of ``data`` at the package's size; MescError when there are none."""
    from mesc.datasets import read_folder
    from mesc.runtime.errors import InputError
    from mesc.runtime.images import read_image

    c, h, w = pipe.chw
    images, errors = [], []
    for path, _ in read_folder(data):
        try:
            images.append(read_image(path, size=(h, w), channels=c, resize=resize))
        except InputError as err:
            errors.append(str(err))
    if errors:
        say(f"skipped {len(errors)} unreadable image(s), e.g. {errors[0]}")
    if not images:
        raise MescError(f"--data {data}: no readable {w}x{h} images" + (f" ({errors[0]})" if errors else ""))
    return images


# Sizes --------------------------------------------------------------------------------------------

def tensor_bytes(spec: Tensor, batch: int) -> int:
    """Bytes of a manifest tensor, a named (dynamic) dimension taken as ``batch``."""
    n = 1
    for d in spec.shape:
        n *= d if isinstance(d, int) else batch
    return n * _DTYPE_BYTES.get(str(spec.dtype).replace("tensor(", "").rstrip(")"), 4)


def _file_bytes(pkg, runner) -> dict:
    files = {s.name: s.file for s in pkg.segments}
    entries = getattr(runner, "entries", None)  # TensorRT: the plans
    if entries:
        files.update({n: m["file"] for n, m in entries.items() if m.get("file")})
    return {n: pkg.path(rel).stat().st_size for n, rel in files.items() if pkg.path(rel).is_file()}


# Bench -------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BenchContext:
    """What one bench runs on: the package loaded on its runner and the request, resolved."""

    pkg: object
    pipe: object  # mesc.runtime.Pipeline, once loaded
    opts: BenchOptions
    dev: object  # mesc.runtime.devices.Device
    target: str | None  # TensorRT build target and engine variant, else None
    variant: str | None
    threads: int
    progress: bool = True
    say: Callable[[str], None] = print

    def runner(self, pkg):
        """A runner of ``pkg`` (the bench's package or a baseline) as the bench asked for it."""
        from mesc.runtime import make_runner

        extra = {"threads": self.threads, "spin": self.opts.spin} if self.opts.backend == "onnxruntime" else {}
        return make_runner(pkg, self.opts.backend, self.dev, self.target, self.variant,
                           cuda_graphs=self.opts.cuda_graphs, **extra)


def bench(package, opts: BenchOptions | None = None, progress: bool = True, say=print) -> dict:
    """Bench the package at ``package``; returns the result dict (see :func:`format_result`)."""
    from mesc.package import Package
    from mesc.runtime import Pipeline

    opts = opts or BenchOptions()
    _check_counts(opts)
    pkg = Package.load(package)
    dev, target, variant = _check_request(pkg, opts)
    ctx = BenchContext(pkg, None, opts, dev, target, variant, opts.threads or os.cpu_count(), progress, say)
    pipe = ctx.pipe = Pipeline(pkg, ctx.runner(pkg))
    try:
        max_b = _max_engine_batch(pipe.runner)
        if max_b is not None and opts.batch > max_b:
            raise MescError(f"--batch {opts.batch} is larger than the engines' optimisation profile "
                            f"(at most {max_b}); rebuild the engines for it")
        images = load_images(opts.data, pipe, opts.resize, say) if opts.data else None
        return _bench(ctx, images)
    finally:
        pipe.close()


def _baselines(ctx: BenchContext, tmp) -> tuple[dict, dict]:
    """Callables of the baselines that can run here, and why the others cannot."""
    from mesc.benchmarks import baselines as bl
    from mesc.runtime import Pipeline

    pkg, opts = ctx.pkg, ctx.opts
    runs, skipped = {}, {}
    if "monolithic" in opts.baselines:
        try:
            prepared = ctx.variant if opts.backend == "onnxruntime" else None
            mono_pkg = bl.monolithic_package(pkg, Path(tmp) / "mono", sources=prepared and
                                             pkg.precisions[prepared].segments, precision=prepared)
            if opts.backend == "tensorrt":
                mono_pkg = bl.build_monolithic_engine(pkg, mono_pkg.root, ctx.target, ctx.variant, ctx.say)
            runs["monolithic"] = Pipeline(mono_pkg, ctx.runner(mono_pkg))
        except (MescError, ImportError) as err:
            skipped["monolithic"] = str(err)
    if "eager" in opts.baselines:
        try:
            net = bl.source_model(pkg)
            runs["eager"] = bl.eager_policy(net, pkg, ctx.threads, ctx.dev)
            runs["eager_forward"] = bl.eager_forward(net, pkg, ctx.threads, ctx.dev)
        except (MescError, ImportError, RuntimeError, AssertionError) as err:  # e.g. a CPU-only torch on cuda
            skipped["eager"] = f"the source model cannot be rebuilt or run here: {err}"
    return runs, skipped


def _call(fn, *args, **kw):
    """A variant for :func:`harness.interleave`: the call, its result dropped (no part timings)."""
    def run():
        fn(*args, **kw)

    return run


def _bench(ctx: BenchContext, images) -> dict:
    import tempfile

    pipe, opts = ctx.pipe, ctx.opts
    c, h, w = pipe.chw
    # eager PyTorch takes the normalised float batch; mesc what an application hands it: uint8
    # images where the package normalises them in its entry segment (timed as a segment)
    x_float = np.random.default_rng(opts.seed).standard_normal((opts.batch, c, h, w)).astype(np.float32)
    x = x_float if pipe.entry is None else \
        np.random.default_rng(opts.seed).integers(0, 256, (opts.batch, h, w, c), dtype=np.uint8)
    exits = pipe.exit_names
    stream = getattr(pipe.runner, "stream", None)
    host = HostClock(stream.synchronize if stream is not None else None)
    seg_clock = segment_clock(pipe.runner)
    variants = {"segments": lambda: pipe.time_segments(x, seg_clock)}
    for k in exits:
        variants[f"exit:{k}"] = _call(pipe, x, exit=k)
    with tempfile.TemporaryDirectory(prefix="mesc-bench-") as tmp:
        base, skipped = _baselines(ctx, tmp)
        for why in skipped.values():
            ctx.say(f"note: baseline skipped: {why}")
        if "monolithic" in base:
            mono = base["monolithic"]
            variants["monolithic"] = _call(mono, x, exit=0)
        if "eager" in base:
            variants["never_exit"] = _call(pipe, x)
        saved = {k: pipe.thresholds(k) for k in exits}
        for k in exits:  # thresholds no image meets, for never_exit; the budgeted runs ignore them
            pipe.set_thresholds(k, **NEVER_EXIT[policy_kind(pipe.pkg.policy(k))])
        try:
            rounds = _rounds(ctx, variants, host, "bench: interleaved rounds")
        finally:
            for k, th in saved.items():
                pipe.set_thresholds(k, **th)
            if "monolithic" in base:
                base["monolithic"].close()
        data = _data_run(ctx, images, host) if images is not None else None
        if "eager" in base:
            # Last and in rounds of its own: the call after an eager run took twice its time
            # (torch's threads and its evicted caches), even 50 ms later, on a 2-core CPU.
            eager = {k: _call(base[k], x_float) for k in ("eager", "eager_forward")}
            rounds.update(_rounds(ctx, eager, host, "bench: eager baselines"))
    return _assemble(ctx, rounds, skipped, data)


def _rounds(ctx: BenchContext, variants: dict, clock, desc: str) -> dict:
    opts = ctx.opts
    bar = progress_bar((opts.warmup + opts.iters) * len(variants), desc, "runs", ctx.progress)
    try:
        return harness.interleave(variants, opts.warmup, opts.iters, clock, progress=lambda name, warm: bar.update(1))
    finally:
        bar.close()


def _data_run(ctx: BenchContext, images, clock) -> dict:
    """Input-dependent against final-only over the images, ``batch`` at a time, alternating the
    two on each group; the first ``warmup`` groups are not kept. Images are batched (and, without
    an entry segment, normalised) before the clock starts, so that final-only times what the
    budgeted ``exit:<final>`` rounds time: the batch the pipeline takes to labels on the host."""
    from collections import Counter

    pipe, opts = ctx.pipe, ctx.opts
    last = pipe.exit_names[-1]
    groups = [pipe.prepare(list(images[i:i + opts.batch]))[0] for i in range(0, len(images), opts.batch)]
    dyn, fin, taken = [], [], Counter()
    warm = groups[:opts.warmup]
    bar = progress_bar(len(warm) + len(groups), f"bench: input-dependent vs final-only ({len(images)} images)",
                       "batches", ctx.progress)
    for i, g in enumerate(warm + groups):
        t = clock.start()
        res = pipe(g)
        t_dyn = clock.stop(t)
        t = clock.start()
        pipe(g, exit=last)
        t_fin = clock.stop(t)
        bar.update(1)
        if i < len(warm):
            continue
        dyn.append(t_dyn)
        fin.append(t_fin)
        taken.update(r.exit for r in res)
    bar.close()
    n = sum(taken.values())
    d, f = harness.summarize(dyn), harness.summarize(fin)
    return {"images": n, "batch": opts.batch, "thresholds": {k: pipe.thresholds(k) for k in pipe.exit_names},
            "exits": {k: taken.get(k, 0) for k in pipe.exit_names},
            "exit_fraction": {k: taken.get(k, 0) / max(n, 1) for k in pipe.exit_names},
            "input_dependent_ms": d, "final_only_ms": f, "speedup_mean": f["mean"] / d["mean"]}


def _assemble(ctx: BenchContext, rounds, skipped, data) -> dict:
    pkg, pipe, opts = ctx.pkg, ctx.pipe, ctx.opts
    seg_parts = rounds["segments"]["parts"]
    seg_stats = {s.name: harness.summarize(seg_parts[s.name]) for s in pkg.segments}
    files = _file_bytes(pkg, pipe.runner)
    segments = [{"name": s.name, "kind": s.kind, "exit": s.exit if s.kind == "head" else None,
                 "flops": int(s.flops or 0), "file_bytes": files.get(s.name),
                 "activation_bytes": sum(tensor_bytes(t, opts.batch) for t in s.outputs),
                 "input_bytes": sum(tensor_bytes(t, opts.batch) for t in s.inputs
                                    if not t.name.endswith("_th_pix")),
                 "ms": seg_stats[s.name]} for s in pkg.segments]
    exit_stats = {ex.name: harness.summarize(rounds[f"exit:{ex.name}"]["total"]) for ex in pkg.exits}
    last = pkg.exits[-1].name
    flops = {s.name: int(s.flops or 0) for s in pkg.segments}
    path_flops = {k: sum(flops[s.name] for s in pkg.segments_until(k)) for k in exit_stats}
    exits = []
    for ex in pkg.exits:
        k, head = ex.name, ex.segment
        names = [s.name for s in pkg.segments_until(k)]
        seg_sum = sum(seg_stats[n]["median"] for n in names)
        lat_share = exit_stats[k]["median"] / exit_stats[last]["median"]
        flop_share = path_flops[k] / path_flops[last] if path_flops[last] else None
        dec = harness.summarize(seg_parts[f"decision:{k}"])
        exits.append({
            "name": k, "enabled": ex.enabled is not False,
            "segments": names, "flops": path_flops[k], "ms": exit_stats[k],
            "segment_sum_ms": seg_sum, "exit_over_segment_sum": exit_stats[k]["median"] / seg_sum,
            "latency_share": lat_share, "flops_share": flop_share,
            "efficiency": lat_share / flop_share if flop_share else None,
            "decision": {"what": "confidence copy" if pipe.in_graph else "logits copy + numpy policy",
                         "bytes": opts.batch * 4 if pipe.in_graph else tensor_bytes(
                             next(t for t in pkg.segment(head).outputs if t.name == ex.logits), opts.batch),
                         "ms": dec, "head_ms": seg_stats[head]["median"],
                         "share_of_head": dec["median"] / seg_stats[head]["median"]}})
    base = {}
    final_ms = exit_stats[last]["median"]
    for name in ("monolithic", "never_exit", "eager", "eager_forward"):
        if name in rounds:
            base[name] = {"ms": harness.summarize(rounds[name]["total"])}
    if "monolithic" in base:
        base["monolithic"]["chain_over_mono"] = final_ms / base["monolithic"]["ms"]["median"]
    if "eager" in base:
        base["eager"]["eager_over_mesc"] = base["eager"]["ms"]["median"] / base["never_exit"]["ms"]["median"]
    if "eager_forward" in base:
        base["eager_forward"]["eager_over_final"] = base["eager_forward"]["ms"]["median"] / final_ms
    for name, why in skipped.items():
        base[name] = {"skipped": why}
    # the head's decision belongs to its cost: that is what the pipeline pays to take or pass it
    head_cost = {ex.segment: np.add(seg_parts[ex.segment], seg_parts[f"decision:{ex.name}"])
                 for ex in pkg.exits}
    record = {s.name: round(float(np.median(head_cost.get(s.name, seg_parts[s.name]))), 4)
              for s in pkg.segments}
    precision = ctx.variant.split("-")[0] if ctx.variant else "fp32"
    overhead = _overhead(pkg, pipe, exits, base)
    return {
        "package": str(pkg.root), "model": pkg.source.get("model"), "date": utc_now(),
        "input_shape": [opts.batch, *pipe.chw], "backend": opts.backend, "device": str(ctx.dev),
        "target": ctx.target, "engine": ctx.variant, "precision": precision,
        "policy": "in-graph" if pipe.in_graph else "host",
        "clock": {"segments": segment_clock(pipe.runner).name, "exits": "host (synchronised)"},
        "settings": {"warmup": opts.warmup, "iters": opts.iters, "batch": opts.batch, "threads": ctx.threads,
                     **({"spin": opts.spin} if opts.backend == "onnxruntime" else {}),
                     "baselines": list(opts.baselines), "data": opts.data},
        "environment": harness.environment(ctx.dev, ctx.threads, precision),
        "segments": segments, "exits": exits, "baselines": base, "data": data, "overhead": overhead,
        "latency_key": latency_key(opts.backend, str(ctx.dev), ctx.target, ctx.variant), "latency_ms": record,
    }


def _overhead(pkg, pipe, exits: list, base: dict) -> dict:
    """What chaining costs beyond the work (issue 25's figures): per extra segment of the final
    exit's path ``(final - monolithic) / (segments - 1)``; per exit the time outside its segments
    (the exit's median minus the sum of its segments' medians: uploads, reads, decisions, Python)
    and the confidence read; and how segments were launched. The entry segment is not counted
    among the segments: the monolithic baseline runs the same entry before its one graph
    (:func:`mesc.benchmarks.baselines.monolithic_package`), so the difference is the chain alone."""
    last = exits[-1]
    mono = base.get("monolithic", {}).get("ms", {}).get("median")
    n = len([s for s in last["segments"] if pkg.segment(s).kind != "entry"])
    return {
        "path": pipe.runner.path(),
        "per_segment_ms": (last["ms"]["median"] - mono) / (n - 1) if mono is not None and n > 1 else None,
        "outside_segments_ms": {e["name"]: e["ms"]["median"] - e["segment_sum_ms"] for e in exits},
        "confidence_read_ms": {e["name"]: e["decision"]["ms"]["median"] for e in exits},
    }


def record_latency(package, result: dict) -> str:
    """Store the per-segment medians in the manifest under the result's latency key, rewriting
    the manifest atomically from a fresh read (another command may have changed it meanwhile)."""
    from mesc.package import Package

    pkg = Package.load(package, verify_checksums=False)
    if [s.name for s in pkg.segments] != list(result["latency_ms"]):
        raise MescError(f"{package}: the package's segments changed since the bench; bench it again")
    pkg.manifest.setdefault("latency", {})[result["latency_key"]] = dict(result["latency_ms"])
    pkg.save()
    return result["latency_key"]


# Output ------------------------------------------------------------------------------------------

def _table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).rjust(wd) if j else str(c).ljust(wd) for j, (c, wd) in enumerate(zip(r, widths)))
                     for r in rows)


def format_result(r: dict) -> str:
    env = r["environment"]
    head = (f"{r['package']} ({r['model']}), input {'x'.join(map(str, r['input_shape']))}, {r['backend']} on "
            f"{r['device']} ({env['device']}), {r['precision']}, {env['threads']} threads"
            + (f" (spin {r['settings']['spin']})" if r["settings"].get("spin") else "") + f", policy {r['policy']}\n"
            f"{r['settings']['iters']} iterations after {r['settings']['warmup']} warm-up; ms")
    rows = [("exit", "GFLOPs", "median", "p90", "p99", "IQR", "sum segs", "lat/flop eff", "decision", "% head")]
    for e in r["exits"]:
        rows.append((e["name"] + ("" if e.get("enabled", True) else " (off)"), f"{e['flops'] / 1e9:.2f}", f"{e['ms']['median']:.2f}", f"{e['ms']['p90']:.2f}",
                     f"{e['ms']['p99']:.2f}", f"{e['ms']['iqr']:.2f}", f"{e['segment_sum_ms']:.2f}",
                     "-" if e["efficiency"] is None else f"{e['efficiency']:.2f}",
                     f"{e['decision']['ms']['median']:.3f}", f"{100 * e['decision']['share_of_head']:.1f}"))
    srows = [("segment", "GFLOPs", "median", "p90", "IQR", "file MB", "activ. MB")]
    for s in r["segments"]:
        srows.append((s["name"], f"{s['flops'] / 1e9:.2f}", f"{s['ms']['median']:.2f}", f"{s['ms']['p90']:.2f}",
                      f"{s['ms']['iqr']:.2f}", "-" if s["file_bytes"] is None else f"{s['file_bytes'] / 2**20:.1f}",
                      f"{s['activation_bytes'] / 2**20:.2f}"))
    lines = [head, _table(rows)]
    if any(not e.get("enabled", True) for e in r["exits"]):
        lines.append("(off): disabled by calibration; timed all the same, skipped by input-dependent runs")
    lines += ["", _table(srows), ""]
    b = r["baselines"]
    for name, v in b.items():
        if "skipped" in v:
            lines.append(f"{name:11s} skipped: {v['skipped']}")
            continue
        extra = ""
        if "chain_over_mono" in v:
            extra = f"  chain (final exit) / monolithic = {v['chain_over_mono']:.3f}"
        if "eager_over_mesc" in v:
            extra = f"  eager / mesc never-exit = {v['eager_over_mesc']:.2f}"
        if "eager_over_final" in v:
            extra = f"  eager forward / mesc final exit = {v['eager_over_final']:.2f}"
        lines.append(f"{name:11s} median {v['ms']['median']:.2f}  p90 {v['ms']['p90']:.2f}{extra}")
    o = r.get("overhead")
    if o:
        path = o["path"]
        per_seg = "-" if o["per_segment_ms"] is None else f"{o['per_segment_ms'] * 1e3:.0f} us"
        outside = ", ".join(f"{k} {v:.3f}" for k, v in o["outside_segments_ms"].items())
        reads = ", ".join(f"{k} {v:.3f}" for k, v in o["confidence_read_ms"].items())
        lines.append(f"overhead    per extra segment {per_seg} ((final - monolithic) / (segments - 1)); "
                     f"outside segments {outside}; confidence read {reads} ms")
        lines.append(f"path        {path['io']} I/O, CUDA graphs {path['cuda_graphs']}"
                     + "".join(f"; {k} uncaptured: {v}" for k, v in path["graph_fallbacks"].items()))
    d = r.get("data")
    if d:
        hist = ", ".join(f"{k} {100 * f:.0f}%" for k, f in d["exit_fraction"].items())
        fin, last = d["final_only_ms"], r["exits"][-1]
        lines.append(f"data: {d['images']} images, exits {hist}; input-dependent mean "
                     f"{d['input_dependent_ms']['mean']:.2f} (p99 {d['input_dependent_ms']['p99']:.2f}) vs final-only "
                     f"{fin['mean']:.2f} ms per batch of {d['batch']}: {d['speedup_mean']:.2f}x")
        lines.append(f"      final-only median {fin['median']:.2f} over these images, against {last['name']}'s "
                     f"{last['ms']['median']:.2f} above over one random batch; both time a normalised batch to labels")
    return "\n".join(lines)


def check_outputs(package, data=None, json_path=None, plot_path=None, force: bool = False) -> None:
    """Refuse, before minutes of timing, a --json or --plot file that exists (unless ``force``),
    overlaps ``package`` or ``data``, or cannot be written."""
    from mesc.package.outputs import check_file_output

    inputs = [("PACKAGE", package), ("--data", data)]
    for option, path in (("--json", json_path), ("--plot", plot_path)):
        if path is not None:
            check_file_output(path, option, force, inputs=inputs)


def write_json(path, result: dict) -> None:
    from mesc.package.staging import write_json_atomic

    write_json_atomic(path, result)


def plot(path, result: dict) -> None:
    """Latency per exit against FLOPs (median, p90 whiskers), with the baselines at the final
    exit's FLOPs and the input-dependent mean at its expected FLOPs."""
    from mesc.lazy import require

    require("matplotlib", extra="plot", purpose="mesc bench --plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = result["exits"]
    gf = [e["flops"] / 1e9 for e in ex]
    med = [e["ms"]["median"] for e in ex]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(gf, med, yerr=[[0] * len(ex), [e["ms"]["p90"] - e["ms"]["median"] for e in ex]], fmt="o-",
                capsize=3, label="mesc, budgeted at exit k")
    for e, x, y in zip(ex, gf, med):
        ax.annotate(e["name"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.plot([0, gf[-1]], [0, med[-1]], ":", color="grey", label="latency proportional to FLOPs")
    for (name, v), marker in zip(result["baselines"].items(), "sD^"):
        if "ms" in v:
            ax.plot([gf[-1]], [v["ms"]["median"]], marker, label=name.replace("_", " "))
    d = result.get("data")
    if d:
        xs = sum(d["exit_fraction"][e["name"]] * e["flops"] / 1e9 for e in ex)
        ax.plot([xs], [d["input_dependent_ms"]["mean"]], "*",
                markersize=11, label="input-dependent mean (data)")
    ax.set_xlabel("GFLOPs to the exit")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{result['model']} {'x'.join(map(str, result['input_shape']))}, {result['backend']} "
                 f"{result['device']} {result['precision']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from mesc.package.staging import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)



def dumps(result: dict) -> str:
    return json.dumps(result, indent=2)
