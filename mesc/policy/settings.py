"""An exit's policy settings in the manifest (``exits[i].policy``): the keys, their checks and
the exit fields an in-graph policy names. :mod:`mesc.package.manifest` calls :func:`check_exit_policy`
for every exit; what each kind adds (its settings and thresholds) comes from the kinds' table
(:mod:`.registry`), so a new kind brings its own keys.
"""

from __future__ import annotations

import math
from collections.abc import Set

from mesc.errors import PackageError
from mesc.policy.registry import COMPARED, kind_of, kinds

POLICY_AT = ("output", "native")
# settings compiled into an exit's graph (th_pix is a graph input; th_img, lo and hi host tests)
COMPILED_POLICY_KEYS = ("kind", "confidence", "edge", "band", "stride", "at", "pooling")
# an exit whose policy runs in its graph names these tensors
IN_GRAPH_KEYS = ("labels", "confidence", "th_pix_input")


def need(cond, where, msg) -> None:
    if not cond:
        raise PackageError(f"{where}: {msg}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def unit_threshold(key: str):
    """The check of a threshold in [0, 1] (th_pix, th_img)."""
    return lambda v: None if is_number(v) and 0.0 <= v <= 1.0 else f"{key} must be a number in [0, 1], got {v!r}"


# keys every kind reads or may carry, with their checks
COMMON_SETTINGS = {
    "th_img": unit_threshold("th_img"),
    "at": lambda v: None if v in POLICY_AT else f"at must be one of {POLICY_AT}, got {v!r}",
}


def _key_checks() -> dict:
    """key -> check, the common keys and every kind's own, the first kind to name a key owning it."""
    checks = {"kind": None, **COMMON_SETTINGS}
    for kind in kinds():
        for key, check in kind.settings.items():
            checks.setdefault(key, check)
    return checks


class _PolicyKeys(Set):
    """The keys a policy may hold (a live, read-only set: the kinds' table decides)."""

    def __contains__(self, key):
        return key in _key_checks()

    def __iter__(self):
        return iter(_key_checks())

    def __len__(self):
        return len(_key_checks())

    def __repr__(self):
        return repr(set(self))


POLICY_KEYS = _PolicyKeys()


def check_policy(policy: dict, where: str) -> None:
    """Validate one exit's policy settings; raises :class:`PackageError` naming the bad key."""
    need(isinstance(policy, dict), where, "policy must be an object")
    checks = _key_checks()
    unknown = set(policy) - set(checks)
    need(not unknown, where, f"unknown policy keys {sorted(unknown)}; expected {sorted(checks)}")
    names = tuple(k.name for k in kinds())
    need(policy.get("kind", "mess") in names, where, f"kind must be one of {names}, got {policy.get('kind')!r}")
    for key, check in checks.items():
        if check is not None and key in policy:
            msg = check(policy[key])
            need(msg is None, where, msg)
    if "lo" in policy and "hi" in policy:
        need(policy["lo"] <= policy["hi"], where, f"lo must not exceed hi, got lo={policy['lo']!r} hi={policy['hi']!r}")


def check_exit_policy(ex: dict, where: str) -> None:
    """Validate an exit's policy (``ex["policy"]``) and the policy tensors the exit names: the
    settings, the in-graph keys as the kind needs them, and the thresholds every run reads."""
    check_policy(ex["policy"], f"{where} policy")
    kind = kind_of(ex["policy"])
    in_graph = ex.get("labels") is not None and ex.get("confidence") is not None
    both = f"{', '.join(IN_GRAPH_KEYS)} must all be set (policy in the graph) or all null"
    need(in_graph or (ex.get("labels") is None and ex.get("confidence") is None), where, both)
    if not in_graph:
        need(ex.get("th_pix_input") is None, where, both)
        need(kind.host, where, f"the {kind.name} policy runs in the exit's graph, but the exit has none "
                               "(labels and confidence are null)")
    elif kind.pixel_threshold:
        need(ex.get("th_pix_input") is not None, where, both)
    else:
        need(ex.get("th_pix_input") is None, where,
             f"th_pix_input must be null: the {kind.name} policy in the graph reads no pixel threshold")
    for key in kind.thresholds:  # what every run reads
        need(key in ex["policy"], f"{where} policy", f"missing '{key}'" + ("" if kind.name == "mess" else
                                                                           f" (the {kind.name} policy's threshold)"))


__all__ = ["COMMON_SETTINGS", "COMPARED", "COMPILED_POLICY_KEYS", "IN_GRAPH_KEYS", "POLICY_AT", "POLICY_KEYS",
           "check_exit_policy", "check_policy", "is_int", "is_number", "need", "unit_threshold"]
