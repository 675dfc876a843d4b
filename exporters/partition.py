"""Partition a traced multi-exit graph into backbone chunks and exit heads by data dependencies.

For the selected exits k1 < ... < kN, let S(n) be the set of selected exits whose logits depend
on node n. Then n belongs to

- chunk i if i = min S(n) and some later selected exit also needs n,
- head i  if S(n) = {i},

and nodes no selected exit needs are dropped (the heads of exits left out). The live set of a
cut is every tensor a segment reads that an earlier segment (or the image) produced; it falls
out of the partition. A dropped exit's chunk merges into the next selected exit's chunk because
its nodes' min S(n) moves to that exit.

We build each segment's GraphModule here instead of using ``torch.fx.passes.split_module``
because the package needs stable tensor names and a fixed input/output order per segment, and
constants (get_attr) copied into every segment that reads them.
"""

from __future__ import annotations

import dataclasses

from mesc.errors import ExportError
from mesc.lazy import require

torch = require("torch", purpose="splitting a PyTorch model")
fx = torch.fx

IMAGE = "image"


@dataclasses.dataclass
class Segment:
    name: str
    kind: str  # "chunk" | "head" | "tail"
    exit: int  # position among the selected exits this segment belongs to
    nodes: list
    inputs: list  # fx nodes read from earlier segments (or the image placeholder)
    outputs: list  # fx nodes later segments read, and the exit's logits for heads
    gm: "fx.GraphModule" = None

    def tensor_names(self, names: dict) -> tuple[list[str], list[str]]:
        return [names[n] for n in self.inputs], [names[n] for n in self.outputs]


def _needed_by(graph, exit_nodes) -> dict:
    """Node -> frozenset of exit positions whose logits depend on it (reverse topological)."""
    own = {n: i for i, n in enumerate(exit_nodes)}
    need = {}
    for n in reversed(list(graph.nodes)):
        s = set()
        for u in n.users:
            if u.op != "output":
                s |= need[u]
        if n in own:
            s.add(own[n])
        need[n] = frozenset(s)
    return need


def partition(traced, selected: list[int], extra_outputs: dict | None = None,
              tails: dict | None = None) -> tuple[list[Segment], dict]:
    """Split ``traced`` for the selected exit indices (ascending, into ``traced.exit_nodes``).

    Returns the segments in execution order (chunk, head, chunk, head, ...) and the tensor
    name of every node that crosses a segment boundary or is an exit's logits.
    ``extra_outputs`` ({node: tensor name}) are made outputs of whichever segment computes them.
    ``tails`` ({exit position: node}) splits what follows that node in the exit's head (its final
    upsampling) into a "tail" segment, which the runtime runs only for images leaving there.
    """
    extra_outputs = extra_outputs or {}
    tails = tails or {}
    gm = traced.gm
    image = _image_input(gm)
    exit_nodes = [traced.exit_nodes[k] for k in selected]
    need = _needed_by(gm.graph, exit_nodes)
    _check_exits_independent(traced, selected, exit_nodes, need)
    buckets = _buckets(gm.graph, need)

    names = {image: IMAGE}
    for i, n in enumerate(exit_nodes):
        names[n] = f"{traced.exit_names[selected[i]]}_logits"
    for n, name in extra_outputs.items():
        names.setdefault(n, name)
    for i, start in tails.items():
        _split_tail(buckets, i, start)

    segments, owner = _segments(buckets, selected, traced)
    for seg in segments:
        _connect(seg, segments, owner, names, outputs=set(exit_nodes) | set(extra_outputs))
        seg.gm = _segment_module(gm, seg, names)
    return segments, names


def _image_input(gm):
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"the model's forward takes {len(placeholders)} inputs; mesc splits models with one image input")
    return placeholders[0]


def _check_exits_independent(traced, selected: list[int], exit_nodes: list, need: dict) -> None:
    for i, n in enumerate(exit_nodes[:-1]):
        later = need[n] - {i}
        if later:
            raise ExportError(
                f"exit {traced.exit_names[selected[i]]}'s logits feed the deeper exit "
                f"{traced.exit_names[selected[min(later)]]}; mesc needs exits whose logits no deeper exit reads"
            )


def _buckets(graph, need: dict) -> dict:
    """(exit position, "chunk" | "head") -> the nodes there, in graph order."""
    buckets = {}
    for n in graph.nodes:
        if n.op in ("placeholder", "output", "get_attr") or not need[n]:
            continue
        first = min(need[n])
        kind = "chunk" if max(need[n]) > first else "head"
        buckets.setdefault((first, kind), []).append(n)
    return buckets


def _split_tail(buckets: dict, i: int, start) -> None:
    """Move what exit i's head computes from ``start`` on into bucket (i, "tail")."""
    head = buckets.get((i, "head"), [])
    if start not in head:
        return
    after = {start}
    for n in head:
        if n is not start and any(a in after for a in n.all_input_nodes):
            after.add(n)
    after.discard(start)
    if after:
        buckets[(i, "tail")] = [n for n in head if n in after]
        buckets[(i, "head")] = [n for n in head if n not in after]


def _segments(buckets: dict, selected: list[int], traced) -> tuple[list[Segment], dict]:
    """The segments in execution order, and node -> the segment computing it. A chunk is named
    after its exit point (``chunk1``), heads and tails after their exit (``head1c0``); a chunk
    before a point's second kept candidate (what two candidates share beyond the backbone) is
    named after that candidate."""
    owner = {}
    segments = []
    for i, k in enumerate(selected):
        first_of_point = i == 0 or traced.points[selected[i - 1]] != traced.points[k]
        for kind in ("chunk", "head", "tail"):
            nodes = buckets.get((i, kind))
            if not nodes:
                continue
            suffix = str(traced.points[k]) if kind == "chunk" and first_of_point else traced.suffix(k)
            seg = Segment(name=f"{kind}{suffix}", kind=kind, exit=i, nodes=nodes, inputs=[], outputs=[])
            for n in nodes:
                owner[n] = seg
            segments.append(seg)
    if not any(s.kind == "head" and s.exit == len(selected) - 1 for s in segments):
        raise ExportError("the final exit has no nodes of its own; the model's deepest exit repeats an earlier one")
    return segments, owner


def _connect(seg: Segment, segments: list[Segment], owner: dict, names: dict, outputs: set) -> None:
    """Fill in what ``seg`` reads from earlier segments and what it must output (tensors later
    segments read, plus ``outputs`` it computes), naming new cut tensors in ``names``."""
    members = set(seg.nodes)
    for n in seg.nodes:
        for a in n.all_input_nodes:
            if a.op != "get_attr" and a not in members and a not in seg.inputs:
                seg.inputs.append(a)
    for n in seg.nodes:
        crosses = any(u not in members and u.op != "output" for u in n.users)
        if crosses or n in outputs:
            seg.outputs.append(n)
            names.setdefault(n, n.name)
    for a in seg.inputs:
        src = owner.get(a)
        if a.op != "placeholder" and (src is None or segments.index(src) >= segments.index(seg)):
            raise ExportError(f"internal partition error: {seg.name} reads {a.name} before it is produced")


def _segment_module(gm, seg: Segment, names: dict):
    graph = fx.Graph()
    env = {}
    for a in seg.inputs:
        env[a] = graph.placeholder(names[a])
    for n in seg.nodes:
        for a in n.all_input_nodes:
            if a.op == "get_attr" and a not in env:
                env[a] = graph.get_attr(a.target)
        env[n] = graph.node_copy(n, lambda x: env[x])
    outs = [env[n] for n in seg.outputs]
    graph.output(tuple(outs))
    sub = fx.GraphModule(gm, graph, seg.name)
    return sub
