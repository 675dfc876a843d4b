"""The one table of exit policy kinds. Every stage reads it: the manifest's validation, the
runtime's host decision, calibration's memo and search, the in-graph builders
(:mod:`mesc.exporters.policy`), ``mesc inspect`` and the benchmarks; no other list of kind
names exists.

A kind (:class:`PolicyKind`) is defined once, in its own module (:mod:`.mess`, :mod:`.mean`,
:mod:`.fft`, :mod:`.learned`), and registered with :func:`register_kind`; a new kind is one
such module (and, to run in the exit's graph, one builder registered with
:func:`mesc.exporters.policy.register_builder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from mesc.errors import MescError

COMPARISONS = ("ge", "range")
# the thresholds each comparison reads, compared on the host with the exit's score
COMPARED = {"ge": ("th_img",), "range": ("lo", "hi")}


@dataclass(frozen=True)
class PolicyKind:
    """One exit policy kind.

    ``name``: the manifest's ``"kind"``. ``thresholds``: the manifest thresholds it reads (every
    run needs them); ``comparison``: how the score meets them, ``"ge"`` (leave when score >=
    ``th_img``) or ``"range"`` (leave when ``lo <= score <= hi``); ``pixel_threshold``: whether
    ``th_pix`` is read too (a graph input of the in-graph policy, a grid of the calibration
    memo). ``never_exit`` / ``always_exit``: thresholds under which (almost) no image leaves /
    every image leaves (a dropped exit, the final exit). ``settings``: the manifest keys the
    kind adds, each with its check (``check(value) -> error message or None``).

    Hooks: ``reference(logits, policy, net=None) -> (N,)`` the numpy reference score of one
    exit's logits under its manifest policy; ``host``: whether the runtime may compute that
    score from the logits and the manifest alone (False: only the exit's graph holds what it
    needs, e.g. the learned network's weights); ``memo_score(softmaxed) -> (N,)``: the score
    from one softmax of the logits (:class:`~mesc.policy.confidence.Softmaxed`), what the
    calibration memo keeps (None: the kind is calibrated otherwise); ``trained``: whether
    calibration fits weights for it (recompiled into the heads with every write); ``factory``:
    ``factory(**params) -> ExitPolicy`` for :func:`get_policy`; ``manifest``: whether a package
    may name the kind (False for a policy object registered with :func:`register_policy` only).
    """

    name: str
    thresholds: tuple = ("th_img",)
    comparison: str = "ge"
    never_exit: dict = field(default_factory=dict)
    always_exit: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    reference: Optional[Callable] = None
    host: bool = True
    memo_score: Optional[Callable] = None
    pixel_threshold: bool = False
    trained: bool = False
    factory: Optional[Callable] = None
    manifest: bool = True
    summary: str = ""

    def score(self, logits, policy: dict, net=None) -> np.ndarray:
        """The numpy reference score (N,) of one exit's logits under its manifest ``policy``."""
        if self.reference is None:
            raise MescError(f"the {self.name} policy has no numpy reference score")
        return np.asarray(self.reference(logits, policy, net=net), dtype=np.float64).reshape(-1)

    def decide(self, scores, policy: dict) -> np.ndarray:
        """Which images (bool, N) leave, from their scores under an exit's manifest ``policy``."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.comparison == "range":
            return (s >= policy["lo"]) & (s <= policy["hi"])
        return s >= policy["th_img"]

    def threshold_text(self, policy: dict) -> str:
        """The compared thresholds as ``mesc inspect`` shows them: ``th_img`` or ``[lo, hi]``."""
        if self.comparison == "range":
            return f"[{policy.get('lo')}, {policy.get('hi')}]"
        return f"{policy.get('th_img')}"


_KINDS: dict = {}


def register_kind(kind: PolicyKind, overwrite: bool = False) -> PolicyKind:
    """Add ``kind`` to the table (in registration order); refused if its name is taken (unless
    ``overwrite``) or its thresholds do not fit its comparison."""
    if not isinstance(kind, PolicyKind):
        raise MescError(f"register_kind takes a PolicyKind, got {type(kind).__name__}")
    if not isinstance(kind.name, str) or not kind.name:
        raise MescError(f"policy name must be a non-empty string, got {kind.name!r}")
    if kind.name in _KINDS and not overwrite:
        raise MescError(f"policy {kind.name!r} is already registered (pass overwrite=True to replace it)")
    if kind.comparison not in COMPARISONS:
        raise MescError(f"policy {kind.name!r}: comparison must be one of {COMPARISONS}, got {kind.comparison!r}")
    if kind.manifest:
        wanted = (("th_pix",) if kind.pixel_threshold else ()) + COMPARED[kind.comparison]
        if tuple(kind.thresholds) != wanted:
            raise MescError(f"policy {kind.name!r}: a {kind.comparison!r} kind reads thresholds {wanted}, "
                            f"got {tuple(kind.thresholds)}")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind (a plug-in or a test's); the built-in kinds stay."""
    if name in _BUILT_IN:
        raise MescError(f"the built-in policy {name!r} cannot be removed")
    _KINDS.pop(name, None)


def get_kind(name) -> PolicyKind:
    """The kind registered as ``name``, or the error listing the kinds."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None or not kind.manifest:
        raise MescError(f"policy kind must be one of {tuple(POLICY_KINDS)}, got {name!r}")
    return kind


def kinds() -> list:
    """Every kind a package may name, in registration order."""
    return [k for k in _KINDS.values() if k.manifest]


def policy_kind(policy: dict) -> str:
    """The kind an exit's manifest policy runs (``"kind"``; packages from before kinds: MESS)."""
    return policy.get("kind", "mess")


def kind_of(policy: dict) -> PolicyKind:
    """The :class:`PolicyKind` an exit's manifest policy runs."""
    return get_kind(policy_kind(policy))


# ----------------------------------------------------------------------------------------------
# the policy objects (mesc.policy.ExitPolicy) of the same table

def register_policy(name: str, factory, overwrite: bool = False) -> None:
    """Register ``factory(**params) -> ExitPolicy`` (usually the class) under ``name``: the
    factory of that kind where it exists, else a policy object that no package names."""
    if not isinstance(name, str) or not name:
        raise MescError(f"policy name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise MescError(f"policy factory for {name!r} must be callable, got {factory!r}")
    if name in _KINDS and not overwrite:
        raise MescError(f"policy {name!r} is already registered (pass overwrite=True to replace it)")
    old = _KINDS.get(name)
    kind = replace(old, factory=factory) if old is not None else PolicyKind(name, factory=factory, manifest=False)
    _KINDS[name] = kind


def get_policy(name: str, **params):
    """Instantiate the policy registered as ``name`` with ``params``."""
    kind = _KINDS.get(name)
    if kind is None or kind.factory is None:
        raise MescError(f"unknown exit policy {name!r}; registered: {list_policies()}")
    return kind.factory(**params)


def list_policies() -> list:
    return sorted(n for n, k in _KINDS.items() if k.factory is not None)


# ----------------------------------------------------------------------------------------------
# the facts other modules name, read from the table whenever they are read

class _KindNames(Sequence):
    """The kind names a package may name (a live, read-only tuple)."""

    def __getitem__(self, i):
        return tuple(k.name for k in kinds())[i]

    def __len__(self):
        return len(kinds())

    def __repr__(self):
        return repr(tuple(self))


class _PerKind(Mapping):
    """kind name -> one attribute of the kind (a live, read-only dict)."""

    def __init__(self, attr: str):
        self._attr = attr

    def __getitem__(self, name):
        kind = _KINDS.get(name)
        if kind is None or not kind.manifest:
            raise KeyError(name)
        return getattr(kind, self._attr)

    def __iter__(self):
        return iter([k.name for k in kinds()])

    def __len__(self):
        return len(kinds())

    def __repr__(self):
        return repr(dict(self))


POLICY_KINDS = _KindNames()
KIND_THRESHOLDS = _PerKind("thresholds")
# thresholds under which (almost) no image leaves, per kind (a dropped exit's)
NEVER_EXIT = _PerKind("never_exit")
# thresholds every score passes, per kind (the final exit's)
ALWAYS_EXIT = _PerKind("always_exit")


def policy_scores(logits, policy: dict) -> np.ndarray:
    """One score per image (N,) of an exit's logits under its manifest policy, on the host.
    A kind whose score needs what only the exit's graph holds (the learned network's weights)
    is refused."""
    kind = kind_of(policy)
    if not kind.host:
        raise MescError(f"the {kind.name} policy runs in the exit's graph only; it has no host implementation "
                        "(export the package with the in-graph policy)")
    return kind.score(logits, policy)


def exit_decision(scores, policy: dict) -> np.ndarray:
    """Which images (bool, N) leave, from their scores under an exit's manifest policy: a range
    kind (FFT) when the score lies in [lo, hi], every other kind when score >= th_img."""
    return kind_of(policy).decide(scores, policy)


_BUILT_IN: set = set()


def mark_built_in() -> None:
    """Record the kinds registered so far as built in (mesc.policy calls it once)."""
    _BUILT_IN.update(_KINDS)


__all__ = ["ALWAYS_EXIT", "COMPARED", "KIND_THRESHOLDS", "NEVER_EXIT", "POLICY_KINDS", "PolicyKind", "exit_decision",
           "get_kind", "get_policy", "kind_of", "kinds", "list_policies", "policy_kind", "policy_scores",
           "register_kind", "register_policy", "unregister_kind"]
