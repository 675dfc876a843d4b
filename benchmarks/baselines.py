"""The baselines mesc is measured against, shared by ``mesc bench`` and ``chain_overhead``.

* the monolithic graph: the whole final-exit path as one ONNX graph (and, for TensorRT, one
  engine), run by the same runtime, backend and precision, so that only chaining differs;
* the eager PyTorch model with the same exit policy applied in Python at every exit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mesc.errors import MescError
from mesc.lazy import require

MONO = "monolithic"


# PyTorch export of the final exit (chain_overhead exports its own plain packages) -----------

def final_exit_onnx(net, shape, path):
    """The eager model's final exit as one ONNX graph (input ``image``, output ``logits``)."""
    import torch

    class FinalExit(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            return list(out.values())[-1] if isinstance(out, dict) else out[-1]

    torch.onnx.export(FinalExit(net).eval(), (torch.zeros(shape),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=17, dynamo=False, do_constant_folding=True)


# The package's own segments composed into one graph ----------------------------------------

def _prefixed(graph, prefix: str):
    """A copy of ``graph`` with ``prefix`` on its nodes' and tensors' names, its inputs and outputs
    left as they are (they wire the segments). Not onnx's ``compose.add_prefix``: up to onnx 1.15
    it renames inputs and outputs too, whatever ``rename_inputs``/``rename_outputs`` say."""
    keep = {t.name for t in graph.input} | {t.name for t in graph.output}

    def new(name: str) -> str:
        return name if not name or name in keep else prefix + name

    def rename(g):
        for node in g.node:
            node.name = prefix + node.name if node.name else node.name
            node.input[:] = [new(n) for n in node.input]
            node.output[:] = [new(n) for n in node.output]
            for attr in node.attribute:  # If/Loop bodies read the outer names: the same renaming
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    for t in (*sub.input, *sub.output):
                        t.name = new(t.name)
                    rename(sub)
        for t in (*g.initializer, *g.value_info):
            t.name = new(t.name)
        return g

    out = type(graph)()
    out.CopyFrom(graph)
    return rename(out)


def compose_segments(paths: list, outputs: list[str]):
    """One ONNX model running the given segment graphs in order, wired by tensor name.

    Each segment's internal names get a per-segment prefix (the exporter names every graph's
    temporaries alike); the tensors that cross segments keep their names, which is what wires
    them. Graph inputs are the crossing tensors no earlier segment produces.
    """
    onnx = require("onnx", extra="core")
    from onnx import helper

    models = [onnx.load(str(p)) for p in paths]
    nodes, inits, inputs, outs, produced, opsets = [], [], [], {}, set(), {}
    for i, m in enumerate(models):
        g = _prefixed(m.graph, f"s{i}/")
        inputs += [t for t in g.input if t.name not in produced and t.name not in {x.name for x in inputs}]
        nodes += g.node
        inits += g.initializer
        produced |= {t.name for t in g.output}
        outs.update({t.name: t for t in g.output})
        for op in m.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    missing = [n for n in outputs if n not in outs]
    if missing:
        raise MescError(f"the composed segments produce no {missing}")
    graph = helper.make_graph(nodes, "mesc_monolithic", inputs, [outs[n] for n in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(m.ir_version for m in models)
    return model


def monolithic_package(pkg, out, sources: dict | None = None, precision: str | None = None):
    """A one-segment package at ``out`` holding the final exit's whole path as one graph.

    ``sources`` maps segment names to other graphs of the same I/O (a prepared FP16/INT8
    build's); they are composed as well and registered as that ``precision``, so that
    ``mesc.engines.build.build`` builds the monolithic engine in the same precision.
    The exit keeps its name and policy, so the runtime runs it exactly like the chain. A
    package's entry segment is kept as it is, ahead of the one graph: the baseline then takes
    the same uint8 images through the same entry, and differs from the chain only in the chain.
    """
    onnx = require("onnx", extra="core")
    from mesc.package.manifest import MANIFEST
    from mesc.package import Package, sha256_file
    from mesc.package.staging import staging_dir, write_json_atomic

    final, entry = pkg.exits[-1], pkg.entry
    path = [s for s in pkg.segments_until(final.name) if s.kind != "entry"]
    # the exit's own segments (head, and tail) give the monolithic outputs
    own = [o for s in path if s.kind != "chunk" for o in s.outputs]
    outputs = [o.name for o in own]
    crossing = {t.name for s in path for t in s.outputs}
    inputs = {t.name: t for s in path for t in s.inputs if t.name not in crossing}
    with staging_dir(out, force=True) as tmp:
        (tmp / "onnx").mkdir()
        files = {}
        graphs = {"fp32": [pkg.path(s.file) for s in path]}
        if sources:
            graphs[precision] = [pkg.path(sources[s.name]) for s in path]
        for p, seg_paths in graphs.items():
            rel = "onnx/monolithic.onnx" if p == "fp32" else f"onnx_{p}/monolithic.onnx"
            (tmp / rel).parent.mkdir(exist_ok=True)
            onnx.save(compose_segments(seg_paths, outputs), str(tmp / rel))
            files[rel] = sha256_file(tmp / rel)
        manifest = {k: v for k, v in pkg.copy_manifest().items() if k not in ("engines", "latency", "precisions")}
        segments = [{"name": MONO, "kind": "head", "exit": final.name, "file": "onnx/monolithic.onnx",
                     "inputs": [t.as_dict() for t in inputs.values()], "outputs": [o.as_dict() for o in own],
                     "flops": sum(s.flops or 0 for s in path)}]
        prepared = {MONO: f"onnx_{precision}/monolithic.onnx"}
        if entry is not None:
            shutil.copyfile(pkg.path(entry.file), tmp / entry.file)
            files[entry.file] = sha256_file(tmp / entry.file)
            segments.insert(0, next(s for s in manifest["segments"] if s["name"] == entry.name))
            prepared[entry.name] = entry.file  # the entry stays FP32 in every precision (mesc prepare)
        manifest.update(
            segments=segments,
            exits=[dict(manifest["exits"][final.position], segment=MONO, tail=None)], files=files, engines={}, latency={})
        if sources:
            manifest["precisions"] = {precision: {"segments": prepared}}
        write_json_atomic(tmp / MANIFEST, manifest)
    return Package.load(out)


# Eager PyTorch ------------------------------------------------------------------------------

def source_model(pkg):
    """Rebuild the package's source model (``manifest["source"]``) for the eager baseline;
    MescError says why it cannot be."""
    from mesc.exporters.model_spec import load_model

    src = pkg.source
    spec, weights = src.get("model"), src.get("weights")
    if not spec:
        raise MescError("the manifest names no source model")
    if weights and not Path(weights).is_file():
        raise MescError(f"the source weights {weights} are not on this machine")
    net, _ = load_model(spec, weights=weights)
    return net


def eager_policy(net, pkg, threads, device="cpu", thresholds: bool = False):
    """The PyTorch model (all exits) with the package's exit policy applied in numpy after each
    early exit, as a Python application would. ``thresholds=False`` never lets an image go (the
    worst case, every exit's policy evaluated); True uses the package's thresholds."""
    import torch

    from mesc.policy import exit_decision, policy_scores, predicted_labels

    torch.set_num_threads(threads)
    dev = torch.device(str(device))
    net = net.to(dev).eval()
    exits = pkg.exits

    def run(x):
        with torch.no_grad():
            out = net(torch.from_numpy(x).to(dev))
        outs = list(out.values()) if isinstance(out, dict) else list(out)
        for ex in exits[:-1]:
            p = ex.policy
            logits = outs[ex.index].cpu().numpy()
            # the policy is evaluated either way: without thresholds it only never lets go
            leaves = exit_decision(policy_scores(logits, p), p).all()
            if thresholds and leaves:
                return predicted_labels(logits)
        return predicted_labels(outs[exits[-1].index].cpu().numpy())

    return run


def eager_forward(net, pkg, threads, device="cpu"):
    """The PyTorch model's forward (every exit computed, as it was trained) and the final exit's
    labels back on the host, no policy: the least a PyTorch application pays for one image. On
    CUDA it keeps the numpy policy of :func:`eager_policy` (host work on full-size logits) out of
    the comparison."""
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(str(device))
    net = net.to(dev).eval()
    final = pkg.exits[-1].index

    def run(x):
        with torch.no_grad():
            out = net(torch.from_numpy(x).to(dev))
            outs = list(out.values()) if isinstance(out, dict) else list(out)
            return outs[final].argmax(1).to(torch.uint8).cpu().numpy()

    return run


def build_monolithic_engine(pkg, mono_root, target: str, variant: str, say=print):
    """Build the monolithic graph into a TensorRT engine like the package's ``target``/``variant``
    build (same precision, DLA core, graphs); returns the monolithic package reloaded."""
    from mesc.engines.build import build
    from mesc.package import Package
    from mesc.runtime.backends.trt.loader import engine_entries

    entry = pkg.manifest["engines"][target]
    entry = entry if "segments" in entry else entry[variant]
    segs = engine_entries(pkg.manifest, target, variant)
    precision = entry.get("precision", variant.split("-")[0])
    sources = {n: m["source_onnx"] for n, m in segs.items() if m.get("source_onnx")}
    if precision != "fp32" and len(sources) == len(pkg.segments):
        monolithic_package(pkg, mono_root, sources=sources, precision=precision)
    say(f"building the monolithic {precision} engine for target '{target}' (one-off, may take minutes)")
    build(mono_root, entry.get("target", target), precision, dla_core=entry.get("dla_core"))
    return Package.load(mono_root)
