"""The in-graph builders, one per policy kind that can run in an exit head's graph.

A builder is ``build(model, logits, prefix, policy, labels=True, net=None) -> ModelProto``: a
copy of the head ``model`` with the kind appended to tensor ``logits`` under ``prefix`` (see
:mod:`.graph` for what the head then outputs), ``policy`` the exit's manifest settings and
``net`` what calibration trained (the learned kind's network). The kinds themselves are in
:mod:`mesc.policy`; a kind without a builder runs on the host only.
"""

from __future__ import annotations

from mesc.errors import MescError

_BUILDERS: dict = {}


def register_builder(kind: str, build, overwrite: bool = False) -> None:
    """Register ``build`` as the in-graph builder of the policy kind ``kind``."""
    from mesc.policy import get_kind

    get_kind(kind)  # a builder belongs to a registered kind
    if not callable(build):
        raise MescError(f"the builder of the {kind} policy must be callable, got {build!r}")
    if kind in _BUILDERS and not overwrite:
        raise MescError(f"the {kind} policy has a builder already (pass overwrite=True to replace it)")
    _BUILDERS[kind] = build


def unregister_builder(kind: str) -> None:
    _BUILDERS.pop(kind, None)


def has_builder(kind: str) -> bool:
    return kind in _BUILDERS


def builder_for(kind: str):
    """The in-graph builder of ``kind``, or the error naming the kinds that have one."""
    from mesc.policy import get_kind

    get_kind(kind)
    if kind not in _BUILDERS:
        raise MescError(f"the {kind} policy has no in-graph builder (kinds that run in the graph: "
                        f"{', '.join(in_graph_kinds())}); run it on the host (export with --policy none)")
    return _BUILDERS[kind]


def in_graph_kinds() -> list:
    """The kinds that can run in the graph, in the kinds' table order."""
    from mesc.policy import kinds

    return [k.name for k in kinds() if k.name in _BUILDERS]


def append_kind(model, logits: str, prefix: str, kind: str, policy: dict | None = None, net=None,
                labels: bool = True):
    """A copy of the head ``model`` with the ``kind`` policy appended to tensor ``logits``
    (float32 N x M x H x W) under ``prefix``, with the exit's manifest ``policy`` settings
    (defaults where absent) and, for the learned kind, its network ``net``."""
    return builder_for(kind)(model, logits, prefix, dict(policy or {}), labels=labels, net=net)


__all__ = ["append_kind", "builder_for", "has_builder", "in_graph_kinds", "register_builder", "unregister_builder"]
