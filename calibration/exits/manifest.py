"""Writing a chosen configuration into the package manifest (``mesc calibrate --write``).

Writing stores the chosen thresholds in the package manifest, atomically, with
:meth:`mesc.package.Package.set_policy` and :meth:`~mesc.package.Package.save`:

* kept non-final exits get ``th_pix`` and ``th_img``, and ``"enabled": true`` on the exit entry;
* exits the configuration drops get ``"enabled": false`` on the exit entry (not in ``policy``:
  the policy schema is closed). A runtime honours it by skipping that exit's head in
  input-dependent mode (its chunk still runs: it is part of the next exit's backbone). As a
  fallback for a runtime that ignores the flag, their policy is also set to ``th_pix = 1.0,
  th_img = 1.0``: the image leaves there only if every (edge-enhanced) pixel has confidence
  exactly 1.0, which float32 softmax reaches only for saturated logits;
* the final exit's policy is untouched (it always takes the images that reach it);
* candidate heads (exits sharing a ``"point"``): the configuration keeps at most one per point;
  that one is enabled, the others of its point are disabled like any dropped exit, so a point
  may keep no head at all;
* ``manifest["calibration"]`` records the data, policy, bound and the predicted figures, and
  for a package with candidates ``"points"``: per exit point its candidates and the kept one.
"""

from __future__ import annotations

from mesc.errors import MescError
from mesc.manifest import exit_points
from mesc.timestamps import utc_now

DISABLED_POLICY = {"th_pix": 1.0, "th_img": 1.0}


def exit_settings(cfg, exit_names) -> dict:
    """Per early exit of ``exit_names`` (the final one excluded): ``{"th_pix", "th_img"}`` where
    ``cfg`` (a MESS Configuration) keeps it, None where it drops it."""
    if cfg.policy != "mess":
        raise MescError(f"only MESS configurations can be written to a package, not {cfg.policy}")
    out = {}
    for name in list(exit_names)[:-1]:
        th_img = cfg.th_img.get(name) if name in cfg.exits else None
        out[name] = None if th_img is None else {"th_pix": float(cfg.th_pix[name]), "th_img": float(th_img)}
    return out


def write_configuration(pkg, cfg, rep: dict | None = None, depends_on=()) -> None:
    """Store ``cfg`` (a MESS Configuration) in the package manifest, atomically; refused if a
    manifest entry in ``depends_on`` (e.g. the latencies its costs came from,
    :meth:`~mesc.calibration.exits.search.Costs.manifest_dependencies`) changed on disk since
    ``pkg`` was read."""
    settings = exit_settings(cfg, [ex["name"] for ex in pkg.exits])
    points = _points(pkg.exits, cfg)
    disabled = []
    for ex in pkg.exits:
        name = ex["name"]
        ex["enabled"] = settings.get(name, True) is not None  # the final exit is not in settings
        if name not in settings:
            continue
        pkg.set_policy(name, **(settings[name] or DISABLED_POLICY))
        if settings[name] is None:
            disabled.append(name)
    pkg.manifest["calibration"] = {
        "created": utc_now(),
        "data": None if rep is None else rep["data"], "images": None if rep is None else rep["images"],
        "policy": cfg.policy, "objective": None if rep is None else rep["objective"],
        "bound": None if rep is None else rep["bound"],
        "exits": cfg.exits, "disabled": disabled, "expected_cost": cfg.expected_cost, "unit": cfg.unit,
        "miou": cfg.miou, "exit_fraction": cfg.exit_fraction,
    }
    if any(len(p["candidates"]) > 1 for p in points):
        pkg.manifest["calibration"]["points"] = points
    pkg.save(depends_on=depends_on)


def _points(exits, cfg) -> list:
    """Per exit point: its candidate exits and the one ``cfg`` keeps (None: none); refuses a
    configuration that keeps two heads at one point or names an exit the package lacks."""
    names = [ex["name"] for ex in exits]
    unknown = [e for e in cfg.exits if e not in names]
    if unknown:
        raise MescError(f"the configuration keeps exits {unknown} that the package does not have "
                        f"(its exits: {names})")
    out: dict = {}
    for name, p in zip(names, exit_points(exits)):
        entry = out.setdefault(p, {"point": p, "candidates": [], "kept": None})
        entry["candidates"].append(name)
        if name in cfg.exits:
            if entry["kept"] is not None:
                raise MescError(f"the configuration keeps two heads at exit point {p} ({entry['kept']} and "
                                f"{name}); at most one candidate per point can be enabled")
            entry["kept"] = name
    return list(out.values())


__all__ = ["exit_settings", "write_configuration", "DISABLED_POLICY"]
