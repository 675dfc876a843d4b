"""Human-readable views of a package (``mesc inspect`` and the export summary)."""

from __future__ import annotations

import os

from mesc.policy import edge_band_of, kind_of


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _shape(spec) -> str:
    return "x".join(str(d) for d in spec.shape)


def _table(rows) -> list[str]:
    """Rows of strings as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]


def format_segments(pkg) -> str:
    total = sum(s.flops or 0 for s in pkg.segments) or 1
    rows = [("segment", "kind", "exit", "live in", "GFLOPs", "share", "size")]
    for s in pkg.segments:
        live = [t for t in s.inputs if not t.name.endswith("_th_pix")]
        rows.append((s.name, s.kind, s.exit or "", str(len(live)),
                     f"{(s.flops or 0) / 1e9:.2f}", f"{100 * (s.flops or 0) / total:.1f}%",
                     _size(os.path.getsize(pkg.path(s.file)))))
    return "\n".join(_table(rows))


def format_config(cfg) -> str:
    """An exit head's configuration (its ``ExitConfig.to_dict()``) in one short cell."""
    if not cfg:
        return "-"
    known = ("head", "reduction", "extra_blocks", "rapid_dilation")
    words = [str(cfg.get("head", "?")), f"reduction {cfg.get('reduction', '?')}",
             f"{cfg.get('extra_blocks', '?')} blocks"]
    if cfg.get("rapid_dilation"):
        words.append("rapid dilation")
    words += [f"{k}={v}" for k, v in cfg.items() if k not in known]
    return ", ".join(words)


def _exit_rows(exits, grouped: bool) -> list[tuple]:
    """The exits table: with candidate heads (``grouped``), grouped by exit point (the point on
    its first row), each candidate with its configuration and whether input-dependent runs use it."""
    configs = any(e.config for e in exits)
    head = (("point",) if grouped else ()) + ("exit", "on") + (("config",) if configs else ()) + (
        "segment", "classes", "os", "confidence", "at", "edge", "band", "stride", "windows", "th_pix", "th_img")
    rows = [head]
    for k, e in enumerate(exits):
        pol = e.policy
        kind = kind_of(pol)  # another kind than MESS is named in place of MESS's confidence
        th_img = kind.threshold_text(pol)
        first = k == 0 or exits[k - 1].point != e.point
        config = (format_config(e.config),) if configs else ()
        rows.append(((str(e.point) if first else "",) if grouped else ()) + (
            e.name, "yes" if e.enabled else "no") + config + (
            e.segment, str(e.num_classes), str(e.output_stride),
            (pol.get("confidence", "") if kind.pixel_threshold else kind.name) + ("" if e.confidence else " (host)"),
            pol.get("at", "output"), str(pol.get("edge")), edge_band_of(pol), str(pol.get("stride")),
            # the MESS windows' graph form (shift/pool); "-" where the head computes none
            e.pooling if e.in_graph and kind.name == "mess" and pol.get("edge", True) else "-",
            f"{pol.get('th_pix')}" if kind.pixel_threshold else "-", th_img))
    return rows


def _prepared(pkg, prec) -> str:
    """'fp16 (windows: exit0 pool, exit1 pool)': a prepared precision and, where its heads
    compute them in another form than the package's own, the MESS windows of its exits."""
    own = {e.name: e.pooling for e in pkg.exits}
    if all(own.get(ex) == form for ex, form in prec.policy_pooling.items()):
        return prec.name
    return f"{prec.name} (windows: {', '.join(f'{ex} {form}' for ex, form in prec.policy_pooling.items())})"


def format_package(pkg) -> str:
    m, src, inp = pkg.view, pkg.source, pkg.input
    lines = [
        f"package   {pkg.root}",
        f"model     {src.get('model')}  weights={src.get('weights')}  opset={src.get('opset')}  "
        f"torch={src.get('torch')}  mesc={m.mesc_version}",
        f"input     {inp.name} {_shape(inp)} {inp.dtype}  dynamic_batch={inp.dynamic_batch}  "
        f"normalization={None if inp.normalization is None else dict(inp.normalization)}",
        "uint8     " + (f"{inp.entry.input} N x H x W x C, normalised on the device by segment '{inp.entry.segment}' "
                        f"(float {inp.dtype} input skips it)" if inp.entry is not None else
                        "normalised on the host (no entry segment; mesc export writes one unless --host-normalize)"),
        "classes   " + (", ".join(f"{i} {c.name} #{bytes(c.color).hex()}" for i, c in enumerate(m.classes))
                        if m.classes else "unnamed (mesc export --class-names stores names and colours)"),
        "",
        format_segments(pkg),
        "",
        "live tensors per segment:",
    ]
    for s in pkg.segments:
        ins = ", ".join(f"{t.name}[{_shape(t)}]" for t in s.inputs)
        outs = ", ".join(f"{t.name}[{_shape(t)}]" for t in s.outputs)
        lines.append(f"  {s.name}: {ins} -> {outs}")
    lines += ["", "exits:"] + ["  " + row for row in _table(_exit_rows(pkg.exits, m.has_points))]
    if m.precisions:
        lines += ["", "prepared: " + "; ".join(_prepared(pkg, p) for _, p in sorted(m.precisions.items()))]
    if m.engines:
        lines += ["", "engines:"] + ["  " + _engine_build(b) for _, builds in sorted(m.engines.items())
                                     for _, b in sorted(builds.items())]
    if m.latency:
        lines += ["", "recorded latency: " + ", ".join(sorted(m.latency))]
    return "\n".join(lines)


def _engine_build(b) -> str:
    """One ``mesc build`` entry: target/variant, TensorRT version, segments, and per segment how
    many of its exit policy's layers a weakly typed FP16/INT8 build kept FP32."""
    name = b.target + (f"/{b.variant}" if b.variant else "")
    trt = b.entry.get("trt_version")
    line = f"{name}: {len(b.segments)} segments" + (f", TensorRT {trt}" if trt else "")
    pinned = b.policy_fp32_layers
    if pinned:
        line += "; policy layers kept FP32: " + ", ".join(f"{seg} {n}" for seg, n in pinned.items())
    return line
