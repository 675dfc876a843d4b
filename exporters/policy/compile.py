"""Compile another exit policy kind into a package's exit heads (``mesc calibrate --write``).

A head written by ``mesc export`` is the exit's own layers with the policy appended under the
exit's name (the kind's builder, :mod:`mesc.exporters.policy`); the policy part is replaced here,
the layers stay byte for byte the same nodes and weights. The new ``onnx/`` folder is built
beside the package's (unchanged files hard-linked), then swapped in together with the manifest
(segment inputs and outputs, the exits' ``th_pix_input`` and policy, checksums) under the
package lock, so a failure leaves the package as it was.

Prepared graphs (``mesc prepare``) and TensorRT engines are built from the heads as they are:
compiling another policy would leave them running the old one, so a package that has any is
refused, naming them (compile first, then prepare and build).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mesc.errors import MescError
from mesc.exporters.policy.graph import strip_policy
from mesc.exporters.policy.registry import append_kind, builder_for
from mesc.policy import get_kind, policy_kind

ONNX_DIR = "onnx"


def compiled_kinds(pkg) -> list:
    """The policy kind each exit of ``pkg`` runs (in its graph or on the host)."""
    return [policy_kind(ex.policy) for ex in pkg.exits]


def in_graph(pkg) -> bool:
    return all(ex.labels and ex.confidence for ex in pkg.exits)


def check_compilable(pkg, kind: str) -> None:
    """Refuse, before any work, a package whose heads cannot take the ``kind`` policy (where
    taking it means recompiling them, :func:`needs_compile`)."""
    spec = get_kind(kind)
    if not in_graph(pkg):
        if not spec.host:
            raise MescError(f"{pkg.root}: the {kind} policy runs in the exit heads' graphs, but this package "
                            "runs its policy on the host (exported with --policy none); re-export it with the "
                            "in-graph policy (--policy top1 or entropy)")
        return  # the host runs every other kind from the logits: nothing to compile
    if not needs_compile(pkg, kind):
        return  # the heads run this kind already: only thresholds change
    built = sorted(pkg.precisions)
    engines = sorted(t for t, e in pkg.engines.items() if e)
    if built or engines:
        what = ", ".join([f"prepared {p} graphs" for p in built] + [f"engines for {t}" for t in engines])
        raise MescError(f"{pkg.root}: compiling the {kind} policy into the exit heads would leave its {what} "
                        f"running the {'/'.join(sorted(set(compiled_kinds(pkg))))} policy they were built with; "
                        f"write the {kind} policy into a package without them (a fresh 'mesc export'), then run "
                        "'mesc prepare' / 'mesc build' on it")
    builder_for(kind)  # a kind without a builder runs on the host only
    for ex in pkg.exits:
        seg = pkg.segment(ex.segment)
        if not seg.file.startswith(ONNX_DIR + "/") or ex.confidence != f"{ex.name}_confidence":
            raise MescError(f"{pkg.root}: exit '{ex.name}': its head {seg.file} does not carry the policy "
                            "as 'mesc export' writes it; re-export the package to change its policy")


def needs_compile(pkg, kind: str) -> bool:
    """Whether writing ``kind`` means rewriting the heads: an in-graph package whose heads run
    another kind, or a trained kind (the learned network: its weights change with every
    calibration)."""
    return in_graph(pkg) and (get_kind(kind).trained or any(k != kind for k in compiled_kinds(pkg)))


def compile_policy(pkg, kind: str, nets: dict | None = None, update=None, depends_on=()) -> None:
    """Rewrite every exit head of the in-graph package ``pkg`` with the ``kind`` policy and
    apply ``update`` (a function of the manifest dict) in the same locked, atomic commit.

    Each head gets the kind's builder with the exit's manifest settings (MESS: confidence, edge,
    stride, band); ``nets`` maps each exit name to what calibration trained for a trained kind
    (the learned kind's :class:`~mesc.policy.learned.DecisionNet`).
    """
    import onnx

    from mesc.exporters.onnx_io import io_specs

    check_compilable(pkg, kind)
    spec = get_kind(kind)
    if spec.trained:
        missing = [ex.name for ex in pkg.exits if (nets or {}).get(ex.name) is None]
        if missing:
            raise MescError(f"the {kind} policy needs a decision network for every exit; none for {missing}")
    heads, specs = {}, {}
    dims = policy_logits_dims(pkg)
    for ex in pkg.exits:
        seg = pkg.segment(ex.segment)
        model = recompile_head(onnx.load(str(pkg.path(seg.file))), ex, kind, ex.policy, dims[ex.name],
                               net=(nets or {}).get(ex.name))
        heads[seg.file] = model
        specs[seg.name] = io_specs(model)

    def apply(m: dict) -> None:
        for seg in m["segments"]:  # the manifest's JSON: this writes it
            if seg["name"] in specs:
                seg["inputs"], seg["outputs"] = specs[seg["name"]]
        for ex in m["exits"]:
            ex["th_pix_input"] = f"{ex['name']}_th_pix" if spec.pixel_threshold else None
            ex["policy"].pop("kind", None)  # absent means MESS (readable by a mesc without kinds)
            if kind != "mess":
                ex["policy"]["kind"] = kind
        if update is not None:
            update(m)

    src_dir = pkg.path(ONNX_DIR)
    with pkg.staging(ONNX_DIR) as tmp:
        tmp = Path(tmp)
        for p in sorted(src_dir.rglob("*")):
            rel = p.relative_to(src_dir)
            if p.is_dir():
                (tmp / rel).mkdir(parents=True, exist_ok=True)
            elif f"{ONNX_DIR}/{rel.as_posix()}" not in heads:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(p, tmp / rel)
        for rel, model in heads.items():
            onnx.save(model, str(tmp / Path(rel).relative_to(ONNX_DIR)))
        pkg.install_dir(tmp, ONNX_DIR, update=apply, depends_on=depends_on)


def recompile_head(model, ex, kind: str, policy, mhw, net=None):
    """A copy of exit ``ex``'s head graph ``model`` with its policy replaced by ``kind`` with
    the manifest settings ``policy``; ``mhw`` is the (M, H, W) its policy reads
    (:func:`policy_logits_dims`). The exit's layers stay the same nodes and weights."""
    model = strip_policy(model, ex.name)
    src = ex.policy_logits or ex.logits
    _set_static_dims(model, src, mhw)
    labels = ex.tail is None  # else the tail gives the labels
    return append_kind(model, src, ex.name, kind, dict(policy), net=net, labels=labels)


def policy_logits_dims(pkg) -> dict:
    """Exit name -> (M, H, W) of the logits its policy reads. The exporter often leaves these
    dims symbolic (a Resize's output), while the entropy confidence needs M and the FFT's DFT
    matrices H and W: the package is run once on a zero image (ONNX Runtime, CPU) to read them."""
    import numpy as np

    from mesc.runtime import Pipeline, make_runner

    batch = pkg.input.shape[0] if isinstance(pkg.input.shape[0], int) else 1
    pipe = Pipeline(pkg, make_runner(pkg, "onnxruntime", "cpu"))
    try:
        out = pipe.tensors(np.zeros((batch, *pkg.input.shape[1:]), np.float32))
    finally:
        pipe.close()
    return {ex.name: tuple(int(d) for d in out[ex.policy_logits or ex.logits].shape[1:])
            for ex in pkg.exits}


def _set_static_dims(model, name: str, mhw) -> None:
    """Give graph output ``name`` (N x M x H x W) the static M, H, W it has at run time."""
    for vi in model.graph.output:
        if vi.name == name:
            for d, size in zip(list(vi.type.tensor_type.shape.dim)[1:], mhw):
                d.Clear()
                d.dim_value = size
            return
    raise MescError(f"the head graph does not output the policy's logits {name!r}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Unchanged segments are hard-linked (no copy of large backbones), copied where the file
    system has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["check_compilable", "compile_policy", "compiled_kinds", "in_graph", "needs_compile", "policy_logits_dims",
           "recompile_head"]
