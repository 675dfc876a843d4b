"""Capture a multi-exit model as an fx graph whose edges are tensors only.

The model contract: ``forward(x)`` returns the exits' logits as a list, tuple or dict (in
insertion order), shallow to deep; an entry may be a list of candidate heads' logits for one exit
point (flattened point by point; the final point is one tensor). Two captures give the graph:
torch.export (the default, :mod:`mesc.exporters.capture_export`) and torch.fx symbolic tracing
(``capture="fx"``, :mod:`mesc.exporters.capture_fx`). Shape arithmetic (``x.shape[-2:]`` for the
final upsampling) is evaluated at the fixed export shape and folded into constants, so no Python
int has to cross a segment boundary: each segment carries its own sizes. Sizes that follow a symbolic batch
(torch.export under ``dynamic_batch``) are recomputed where they are used instead.
"""

from __future__ import annotations

import dataclasses

from mesc.errors import ExportError
from mesc.lazy import require

torch = require("torch", purpose="tracing a PyTorch model")
fx = torch.fx

_UPSAMPLE_FUNCS = {torch.nn.functional.interpolate, torch.nn.functional.upsample}
CAPTURES = ("export", "fx")


@dataclasses.dataclass
class TracedModel:
    """A tensor-only fx graph and what the splitter needs to know about it."""

    gm: "fx.GraphModule"
    exit_nodes: list  # fx nodes, shallow to deep
    exit_names: list[str]
    values: dict  # node name -> example value at the export shape
    strides: list[int]  # measured output stride per exit
    native_nodes: list  # per exit, the logits before the head's final upsampling
    # per exit, its exit point and its candidate index there (a forward returning a list of
    # candidate logits for a point); a model without candidates has points == positions
    points: list[int] = None
    candidates: list[int] = None

    def __post_init__(self):
        if self.points is None:
            self.points = list(range(len(self.exit_nodes)))
            self.candidates = [0] * len(self.exit_nodes)

    @property
    def has_candidates(self) -> bool:
        return len(set(self.points)) != len(self.points)

    def point_size(self, k: int) -> int:
        """How many candidate heads the model offers at exit ``k``'s point."""
        return self.points.count(self.points[k])

    def suffix(self, k: int) -> str:
        """What exit ``k``'s segment names end with: its point (``head1``), and its candidate
        where the point has several (``head1c2``)."""
        p = self.points[k]
        return f"{p}c{self.candidates[k]}" if self.point_size(k) > 1 else f"{p}"


def _has_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _as_constant(value):
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, (list, tuple)):
        return type(value)(_as_constant(v) for v in value)
    return value


class _Recorder(fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.values = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.values[n.name] = out
        return out


def _fold_non_tensors(gm, values) -> None:
    """Replace every node whose value holds no tensor by its value at the export shape."""
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "output", "get_attr") or node.name not in values:
            continue
        if _has_tensor(values[node.name]):
            continue
        const = _as_constant(values[node.name])
        for user in list(node.users):
            user.args = fx.node.map_arg(user.args, lambda a: const if a is node else a)
            user.kwargs = fx.node.map_arg(user.kwargs, lambda a: const if a is node else a)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _exit_outputs(result, model_name: str):
    """(exit nodes, exit names, points, candidate indices) of the forward's result, flattened
    point by point, candidates in list order."""
    if isinstance(result, fx.Node):
        raise ExportError(
            f"{model_name}.forward returns a single tensor; a multi-exit model must return the exits' "
            "logits as a list, tuple or dict, shallow to deep"
        )
    if isinstance(result, dict):
        keys, entries = [str(k) for k in result.keys()], list(result.values())
    elif isinstance(result, (list, tuple)):
        entries = list(result)
        keys = [f"exit{i}" for i in range(len(entries))]
    else:
        raise ExportError(f"{model_name}.forward returns {type(result).__name__}; expected a list, tuple or dict of tensors")
    if not entries:
        raise ExportError(f"{model_name}.forward must return a non-empty sequence of tensors (one per exit)")
    nodes, names, points, cands = [], [], [], []
    for p, (key, entry) in enumerate(zip(keys, entries)):
        group = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        if not group or not all(isinstance(n, fx.Node) for n in group):
            raise ExportError(f"{model_name}.forward: exit point {p} ({key}) must be a tensor or a non-empty list of "
                              "candidate tensors (one per candidate head)")
        if len(group) > 1 and p == len(entries) - 1:
            raise ExportError(f"{model_name}.forward returns {len(group)} candidate heads at its final exit point "
                              f"({key}); the final point must be one tensor (candidates are for early exit points)")
        for j, n in enumerate(group):
            nodes.append(n)
            names.append(_safe_name(key if len(group) == 1 else f"{key}c{j}"))
            points.append(p)
            cands.append(j)
    if len(set(nodes)) != len(nodes):
        raise ExportError(f"{model_name}.forward returns the same tensor for two exits")
    return nodes, names, points, cands


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _before_upsampling(node):
    """The exit's logits at their native resolution: walk back from the exit through the
    head's final interpolate/Upsample nodes."""
    gm_modules = node.graph.owning_module
    cur = node
    while True:
        is_up = (cur.op == "call_function" and (cur.target in _UPSAMPLE_FUNCS or _is_aten_upsample(cur.target))) or (
            cur.op == "call_module" and isinstance(gm_modules.get_submodule(cur.target), torch.nn.Upsample)
        )
        if not is_up or not isinstance(cur.args[0], fx.Node):
            return cur
        cur = cur.args[0]


def _is_aten_upsample(target) -> bool:
    """torch.export records interpolate and nn.Upsample as aten::upsample_* (or _upsample_*)."""
    name = getattr(getattr(target, "_schema", None), "name", "")
    return name.startswith(("aten::upsample_", "aten::_upsample_"))


def _output_stride(native, values, input_hw) -> int:
    """Input size over the resolution of the logits before the final upsampling."""
    h = values[native.name].shape[-2]
    return max(1, int(round(input_hw[0] / h)))


def trace_model(model, example, capture: str = "export", strict: bool = False, dynamic_batch: bool = False,
                verbose: bool = False):
    """Capture ``model`` at the example input and return a :class:`TracedModel`.

    ``capture`` is "export" (torch.export; ``strict`` for its strict mode; the batch symbolic
    with ``dynamic_batch``) or "fx" (torch.fx symbolic tracing).
    """
    name = type(model).__name__
    if capture == "export":
        from mesc.exporters.capture_export import capture_export

        gm, result = capture_export(model, example, strict=strict, dynamic_batch=dynamic_batch,
                                    verbose=verbose)
    elif capture == "fx":
        from mesc.exporters.capture_fx import capture_fx

        gm, result = capture_fx(model)
    else:
        raise ExportError(f"--capture must be one of {CAPTURES}, got {capture!r}")
    nodes, names, points, cands = _exit_outputs(result, name)
    rec = _Recorder(gm)
    with torch.no_grad():
        try:
            rec.run(example)
        except Exception as err:
            raise ExportError(
                f"running the traced {name} at input shape {tuple(example.shape)} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
    for n, exit_name in zip(nodes, names):
        v = rec.values.get(n.name)
        if not isinstance(v, torch.Tensor) or v.dim() != 4:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ExportError(f"exit {exit_name} of {name} returns {shape}; expected N x classes x H x W logits")
    if capture == "export" and dynamic_batch:
        from mesc.exporters.symbolic_batch import recompute_batch_sizes

        recompute_batch_sizes(gm)
    _fold_non_tensors(gm, rec.values)
    native = [_before_upsampling(n) for n in nodes]
    strides = [_output_stride(n, rec.values, tuple(example.shape[-2:])) for n in native]
    return TracedModel(gm=gm, exit_nodes=nodes, exit_names=names, values=rec.values, strides=strides,
                       native_nodes=native, points=points, candidates=cands)


__all__ = ["TracedModel", "trace_model"]
