"""Writing a chosen configuration into the package manifest (``mesc calibrate --write``).

Writing stores the chosen policy and thresholds in the package manifest, atomically:

* every exit's policy gets the calibrated ``kind`` (one of :data:`mesc.policy.POLICY_KINDS`)
  and that kind's thresholds (:attr:`mesc.policy.PolicyKind.thresholds`; MESS: ``th_pix`` and
  ``th_img``; the mean confidences and the learned network: ``th_img``; FFT: ``lo`` and
  ``hi``), the other kinds' thresholds removed;
* when the heads of a package with the in-graph policy run another kind (or the kind is
  ``learned``, whose weights are new), the heads are recompiled with it in the same locked
  commit (:mod:`mesc.exporters.policy.compile`); a host-policy package only changes its
  manifest, the runtime computing the kind's score from the logits;
* kept non-final exits get ``"enabled": true`` on the exit entry;
* exits the configuration drops get ``"enabled": false`` on the exit entry (not in ``policy``:
  the policy schema is closed). A runtime honours it by skipping that exit's head in
  input-dependent mode (its chunk still runs: it is part of the next exit's backbone). As a
  fallback for a runtime that ignores the flag, their thresholds are set so that (almost) no
  image leaves there (the kind's ``never_exit``, ``DISABLED_THRESHOLDS``): MESS ``th_pix = 1.0,
  th_img = 1.0`` lets an image go only if every (edge-enhanced) pixel has confidence exactly
  1.0, which float32 softmax reaches only for saturated logits; the FFT range [-1, -1] holds no
  magnitude;
* the final exit takes every image that reaches it: a MESS package keeps its policy as it was,
  another kind gets thresholds every score passes (the kind's ``always_exit``,
  ``FINAL_POLICY``);
* candidate heads (exits sharing a ``"point"``): the configuration keeps at most one per point;
  that one is enabled, the others of its point are disabled like any dropped exit, so a point
  may keep no head at all;
* ``manifest["calibration"]`` records the data, policy, bound and the predicted figures, and
  for a package with candidates ``"points"``: per exit point its candidates and the kept one.
"""

from __future__ import annotations

from mesc.errors import MescError
from mesc.package.manifest import exit_points
from mesc.policy import ALWAYS_EXIT, NEVER_EXIT, POLICY_KINDS, get_kind, kinds
from mesc.timestamps import utc_now


def threshold_keys() -> set:
    """Every threshold some kind reads (what a kind change removes)."""
    return {key for kind in kinds() for key in kind.thresholds}


# an exit that should take (almost) no image, per kind (see the module docstring)
DISABLED_THRESHOLDS = NEVER_EXIT
DISABLED_POLICY = NEVER_EXIT["mess"]
# the final exit's thresholds: every score passes (the scores are >= 0, and float32 from the
# graph); a kind with a pixel threshold (MESS) keeps the final exit's own, these where absent
FINAL_POLICY = ALWAYS_EXIT


def exit_settings(cfg, exit_names) -> dict:
    """Per early exit of ``exit_names`` (the final one excluded): the thresholds of ``cfg``'s
    policy kind where ``cfg`` keeps the exit (MESS ``{"th_pix", "th_img"}``, FFT ``{"lo",
    "hi"}``, the others ``{"th_img"}``), None where it drops it."""
    if cfg.policy not in POLICY_KINDS:
        raise MescError(f"a {cfg.policy!r} configuration cannot be written to a package; policies: "
                        f"{sorted(POLICY_KINDS)}")
    kind = get_kind(cfg.policy)
    out = {}
    for name in list(exit_names)[:-1]:
        th = (cfg.thresholds.get(name) or {}) if name in cfg.exits else {}
        if kind.pixel_threshold:
            th_img = cfg.th_img.get(name) if name in cfg.exits else None
            out[name] = None if th_img is None else {"th_pix": float(cfg.th_pix[name]), "th_img": float(th_img)}
        elif kind.comparison == "range":
            out[name] = {"lo": float(th["lo"]), "hi": float(th["hi"])} if "lo" in th else None
        else:
            out[name] = {"th_img": float(th["th"])} if th.get("th") is not None else None
    return out


def _policy_with(policy: dict, kind: str, thresholds: dict) -> dict:
    """``policy`` running ``kind`` with ``thresholds``, other kinds' thresholds removed. MESS is
    written without a ``kind`` (its absence means MESS), so such packages stay readable by a mesc
    from before policy kinds."""
    out = dict({k: v for k, v in policy.items() if k not in threshold_keys() | {"kind"}}, **thresholds)
    return out if kind == "mess" else dict(out, kind=kind)


def write_configuration(pkg, cfg, rep: dict | None = None, depends_on=(), nets: dict | None = None) -> None:
    """Store ``cfg`` (a Configuration of any policy kind) in the package manifest, compiling its
    kind into the heads where they run another (``nets``: the learned policy's decision network
    per exit name), atomically; refused if a manifest entry in ``depends_on`` (e.g. the
    latencies its costs came from,
    :meth:`~mesc.calibration.exits.search.Costs.manifest_dependencies`) changed on disk since
    ``pkg`` was read."""
    from mesc.exporters.policy.compile import check_compilable, compile_policy, needs_compile

    kind = cfg.policy
    settings = exit_settings(cfg, [ex.name for ex in pkg.exits])
    check_compilable(pkg, kind)
    points = _points(pkg.exits, cfg)
    disabled = [name for name, s in settings.items() if s is None]
    record = {
        "created": utc_now(),
        "data": None if rep is None else rep["data"], "images": None if rep is None else rep["images"],
        "policy": kind, "objective": None if rep is None else rep["objective"],
        "bound": None if rep is None else rep["bound"],
        "exits": cfg.exits, "disabled": disabled, "expected_cost": cfg.expected_cost, "unit": cfg.unit,
        "miou": cfg.miou, "exit_fraction": cfg.exit_fraction,
    }

    def apply(m: dict) -> None:
        for ex in m["exits"]:  # the manifest's JSON: this writes it
            name = ex["name"]
            ex["enabled"] = settings.get(name, True) is not None  # the final exit is not in settings
            if name in settings:
                th = settings[name] or DISABLED_THRESHOLDS[kind]
            elif get_kind(kind).pixel_threshold:  # the final exit keeps its own (it takes every image anyway)
                th = {k: ex["policy"].get(k, v) for k, v in FINAL_POLICY[kind].items()}
            else:
                th = FINAL_POLICY[kind]
            ex["policy"] = _policy_with(ex["policy"], kind, th)
        m["calibration"] = record
        if any(len(p["candidates"]) > 1 for p in points):
            m["calibration"]["points"] = points

    if needs_compile(pkg, kind):
        compile_policy(pkg, kind, nets=nets, update=apply, depends_on=depends_on)
        return
    apply(pkg.manifest)
    pkg.save(depends_on=depends_on)


def _points(exits, cfg) -> list:
    """Per exit point: its candidate exits and the one ``cfg`` keeps (None: none); refuses a
    configuration that keeps two heads at one point or names an exit the package lacks."""
    names = [ex.name for ex in exits]
    unknown = [e for e in cfg.exits if e not in names]
    if unknown:
        raise MescError(f"the configuration keeps exits {unknown} that the package does not have "
                        f"(its exits: {names})")
    out: dict = {}
    for name, p in zip(names, (ex.point for ex in exits)):
        entry = out.setdefault(p, {"point": p, "candidates": [], "kept": None})
        entry["candidates"].append(name)
        if name in cfg.exits:
            if entry["kept"] is not None:
                raise MescError(f"the configuration keeps two heads at exit point {p} ({entry['kept']} and "
                                f"{name}); at most one candidate per point can be enabled")
            entry["kept"] = name
    return list(out.values())


__all__ = ["exit_settings", "write_configuration", "DISABLED_POLICY", "DISABLED_THRESHOLDS", "FINAL_POLICY"]
