"""The calibration report: the JSON record, its text summary and the Pareto plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.timestamps import utc_now


def load_pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or the error naming the plot extra."""
    from mesc.lazy import require

    mpl = require("matplotlib", extra="plot", purpose="--plot")
    mpl.use("Agg")
    return require("matplotlib.pyplot", extra="plot", purpose="--plot")


# ---------------------------------------------------------------------------------------------
# what a report was computed on

# The package facts a calibration depends on: thresholds found for one model, input size, set
# of exits, policy, confidence, edge band or precision mean nothing for another, so
# `mesc export --from-report` compares every one of them (exporters/lean.py).
IDENTITY_FIELDS = ("model", "weights_sha256", "input_shape", "exits", "policy", "confidence", "band", "precision")


def model_identity(spec):
    """A model spec as reports compare it: a ``path/to/file.py:factory`` by its file name and
    factory (the same file in another folder is the same model); any other spec as written."""
    if not isinstance(spec, str):
        return spec
    where, sep, attr = spec.rpartition(":")
    if sep and where.endswith(".py"):
        return f"{Path(where).name}:{attr}"
    return spec


def precision_of(variant) -> str | None:
    """The precision of an engine variant (``int8-dla0`` -> ``int8``)."""
    return variant.split("-")[0] if isinstance(variant, str) else None


def package_identity(manifest: dict, precision) -> dict:
    """What a calibration of the package ``manifest`` describes is computed on (every field of
    :data:`IDENTITY_FIELDS`); ``precision``: what its exits ran at (``fp32`` ONNX, or the
    TensorRT engines' precision). Per-exit settings are listed as the set the exits use."""
    from mesc.policy import edge_band_of, policy_kind

    source = manifest.get("source") or {}
    exits = manifest.get("exits") or []
    policies = [ex.get("policy") or {} for ex in exits]
    return {
        "model": model_identity(source.get("model")),
        "weights_sha256": source.get("weights_sha256"),
        "input_shape": list(manifest["input"]["shape"][1:]),
        "exits": [ex["name"] for ex in exits],
        "policy": sorted({policy_kind(p) for p in policies}),
        "confidence": sorted({p["confidence"] for p in policies if p.get("confidence")}),
        "band": sorted({edge_band_of(p) if p.get("edge", True) else "none" for p in policies}),
        "precision": precision_of(precision),
    }


# ---------------------------------------------------------------------------------------------
# report

def _cfg(c) -> dict:
    return None if c is None else c.to_dict()


def exit_taking_all(cfg) -> str | None:
    """The kept non-final exit, if any, at which every image that reaches it leaves: the exits
    after it then never run on this set (th_img 0 is the extreme: any confidence passes)."""
    reaching = 1.0
    for name in cfg.exits[:-1]:
        leaving = cfg.exit_fraction.get(name, 0.0)
        if reaching > 0 and abs(leaving - reaching) < 1e-9:
            return name
        reaching -= leaving
    return None


def point_heads(result, names, sid: int):
    """The exits a recorded point (its subset id, :attr:`SearchResult.point_subsets`) keeps."""
    if sid >= 0:
        return [names[e] for e in result.subsets[sid]]
    return [names[-2 - sid]] if sid <= -2 else None


def _architectures(result, names) -> list:
    """Per kept-exit subset (choice of heads) searched: its best configuration under the bound
    (None where the search, capped by the best found elsewhere, met nothing that could win)."""
    return [{"exits": [names[e] for e in sub], "fixed_heads": b["fixed_heads"], "meets_bound": b["feasible"],
             "exhaustive": b["exhaustive"], "seconds": round(b["seconds"], 4), "best": _cfg(b["best"])}
            for sub, b in zip(result.subsets, result.by_subset)]


# plain thresholds chosen among this many architectures per calibration image (or more) overshoot the
# bound on new images most of the time: demo-search, 36 architectures on 600 images (0.06 per image),
# overshot 0.5 pp in 75 % of 20 splits (benchmarks/results/risk_demo-search_cpu.json)
HIGH_RISK_ARCHITECTURES_PER_IMAGE = 0.05


def selection(result, images: int, risk) -> dict:
    """How much the choice was fitted to the calibration images: the architectures it chose among
    against the images, and whether new images are likely to overshoot the bound (``warning``)."""
    space = int(result.space.get("architectures", len(result.subsets)))
    per_image = space / images if images else float("inf")
    out = {"architectures": space, "images": int(images), "architectures_per_image": per_image,
           "overshoot_risk": None, "warning": None}
    if result.objective != "max-drop" or risk is not None:
        return out  # a cost bound holds on new images in expectation; --risk guarantees its own
    if result.best.exits == result.reference.exits:
        out["overshoot_risk"] = "none"  # the final exit alone drops nothing anywhere
        return out
    high = per_image >= HIGH_RISK_ARCHITECTURES_PER_IMAGE
    out["overshoot_risk"] = "high" if high else "even"
    if high:
        out["warning"] = (f"chosen among {space} architectures on {images} calibration images ({per_image:.2g} per "
                          f"image): on new images the mIoU drop will likely overshoot the bound (36 architectures on "
                          f"600 images overshot 0.5 pp in 75 % of held-out splits); calibrate with --risk DELTA for a "
                          f"guarantee, or on more images")
    return out


def _gain(best, fixed) -> dict | None:
    """What the search over heads gained over the best fixed-head configuration."""
    if fixed is None:
        return None
    return {"cost": 1.0 - best.expected_cost / fixed.expected_cost if fixed.expected_cost else 0.0,
            "miou_pp": 100.0 * (best.miou - fixed.miou)}


def build_report(pkg, data, memo, costs, result, policy, compare=None, risk=None) -> dict:
    front = result.pareto()
    names = {i: [memo.exits[e] for e in s] for i, s in enumerate(result.subsets)}
    pts = result.points
    best, ref = result.best, result.reference
    rep = {
        "created": utc_now(),
        "package": str(pkg.root),
        # checked by `mesc export --from-report` against the model it exports
        "package_identity": package_identity(pkg.manifest, memo.meta.get("precision")),
        "data": str(data),
        "split": memo.meta.get("split"),
        **{k: memo.meta.get(k) for k in ("backend", "device")},
        "images": memo.n,
        "policy": policy,
        "objective": result.objective,
        "bound": result.bound,
        "cost": {"unit": costs.unit, "source": costs.source, "chunk": costs.chunk.tolist(),
                 "head": costs.head.tolist(), "tail": costs.tail.tolist(), "exits": memo.exits,
                 "point": costs.point.tolist(),
                 "model_index": [pkg.exit(e).model_index for e in memo.exits]},
        "chosen": _cfg(best),
        "final_only": _cfg(ref),
        "saving": 1.0 - best.expected_cost / ref.expected_cost if ref.expected_cost else 0.0,
        "miou_drop_pp": 100.0 * (ref.miou - best.miou),
        "takes_all": exit_taking_all(best),
        "budgeted": [_cfg(c) for c in result.budgeted],
        "budgeted_best": _cfg(result.budgeted_best),
        "anytime": result.anytime,
        "anytime_best": result.anytime_best,
        "pareto": [{"cost": float(pts[i, 0]), "miou": float(pts[i, 1]),
                    "exits": names.get(int(result.point_subsets[i]), "budgeted"),
                    "heads": point_heads(result, memo.exits, int(result.point_subsets[i]))} for i in front],
        "candidates": bool(costs.has_candidates),
        "architectures": _architectures(result, memo.exits),
        "fixed_heads_best": _cfg(result.fixed_heads_best),
        "fixed_heads_meet_bound": None if result.fixed_heads_best is None
        else result.meets_bound(result.fixed_heads_best),
        "gain_over_fixed_heads": _gain(best, result.fixed_heads_best),
        "search": {"seconds": round(result.seconds, 3), "evaluated": int(result.evaluated),
                   "visited": int(result.space.get("visited", result.evaluated)),
                   "architectures": int(result.space.get("architectures", len(result.subsets))),
                   "searched": len(result.subsets), "pruned": dict(result.space.get("pruned") or {}),
                   "exhaustive": {"+".join(memo.exits[e] for e in k): v for k, v in result.exhaustive.items()}},
        "memo": {"th_pix_grid": [float(g) for g in memo.th_pix_grid], "cached": bool(memo.meta.get("cached")),
                 "conf_check_max_abs": memo.meta.get("conf_check_max_abs")},
    }
    rep["selection"] = selection(result, memo.n, risk)
    # the heads' costs were measured (or counted) with the policy they run now compiled in
    rep["compiled_policy"] = sorted({ex.policy.get("kind", "mess") for ex in pkg.exits})
    if compare:
        # every kind calibrate knows can be written (--write) and run: all are deployable
        rep["other_policies"] = {p: {"chosen": _cfg(r.best), "seconds": round(r.seconds, 3), "deployable": True,
                                     "expected_cost": r.best.expected_cost, "unit": costs.unit,
                                     "miou": r.best.miou}
                                 for p, r in compare.items() if r is not None}
    return rep


def format_report(rep: dict) -> str:
    unit = rep["cost"]["unit"]
    ref, best = rep["final_only"], rep["chosen"]
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    lines = [
        f"calibration set  {rep['images']} images from {rep['data']}; policy {rep['policy']}; "
        f"costs from {rep['cost']['source']} ({unit})",
        f"final exit only  expected cost {ref['expected_cost']:.4g} {unit}, mIoU {pct(ref['miou'])}",
        f"chosen           exits {', '.join(best['exits'])}: expected cost {best['expected_cost']:.4g} {unit} "
        f"({-100 * rep['saving']:+.1f}%), mIoU {pct(best['miou'])} ({-rep['miou_drop_pp']:+.2f} pp)",
        "",
    ]
    candidates = rep.get("candidates", False)
    # with candidate heads a point column says which exits compete for one place
    at = (lambda name: (str(rep["cost"]["point"][rep["cost"]["exits"].index(name)]),)) if candidates \
        else (lambda name: ())  # noqa: E731
    rows = [("exit", *(("point",) if candidates else ()), "kept", "th_pix", "th_img", "leaves here")]
    kept = set(best["exits"])
    for name in rep["cost"]["exits"]:
        if name not in kept:
            rows.append((name, *at(name), "no", "-", "-", "-"))
            continue
        th = best["thresholds"].get(name) or {}
        if name == best["exits"][-1]:
            tp, ti = "-", "(rest)"
        elif "lo" in th:  # a range kind's (FFT's) score range, not a threshold
            tp, ti = "-", f"[{th.get('lo', 0):.4g}, {th.get('hi', 0):.4g}]"
        else:
            tp = "-" if best["th_pix"].get(name) is None else f"{best['th_pix'][name]:.4g}"
            ti = "never" if best["th_img"].get(name) is None else f"{best['th_img'][name]:.4f}"
        rows.append((name, *at(name), "yes", tp, ti, pct(best["exit_fraction"][name])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines += ["", "budgeted (always one exit):  " + "   ".join(
        f"{c['exits'][0]} {c['expected_cost']:.4g} {unit} {pct(c['miou'])}" for c in rep["budgeted"])]
    lines += ["anytime (all heads up to):    " + "   ".join(
        f"{a['exit']} {a['cost']:.4g} {unit} {pct(a['miou'])}" for a in rep["anytime"])]
    bb = rep.get("budgeted_best")
    lines += ["best single exit under the bound: " + ("none" if bb is None else
              f"{bb['exits'][0]} ({bb['expected_cost']:.4g} {unit}, mIoU {pct(bb['miou'])})")]
    if rep["objective"] == "max-cost":
        ab = rep.get("anytime_best")
        lines += ["anytime within the cost reaches:  " + ("no exit" if ab is None else
                  f"{ab['exit']} ({ab['cost']:.4g} {unit}, mIoU {pct(ab['miou'])})")]
    others = rep.get("other_policies") or {}
    for p, r in others.items():
        c = r["chosen"]
        lines.append(f"policy {p:<13s}  exits {', '.join(c['exits'])}: expected cost {c['expected_cost']:.4g} {unit}, "
                     f"mIoU {pct(c['miou'])}")
    if others:
        lines.append(f"note             every policy above can be written (--policy P --write); their costs use the "
                     f"{rep['cost']['source']} head costs recorded with the {'/'.join(rep.get('compiled_policy') or ['mess'])} "
                     f"policy compiled in")
    if best["exits"] == ref["exits"]:
        lines.append("note             no input-dependent configuration beats the final exit alone within the bound")
    takes_all = rep.get("takes_all")
    if takes_all:
        th = best["th_img"].get(takes_all)
        why = " whatever its confidence (th_img 0)" if th is not None and th <= 0 else ""
        lines.append(f"note             {takes_all} takes every image that reaches it{why}: on this set the exits "
                     f"after it never run, which the bound allows; check the set is representative")
    dropped = [e for e in rep["cost"]["exits"] if e not in kept]
    if dropped and candidates:
        lines.append(f"note             dropped heads ({', '.join(dropped)}) are written as \"enabled\": false "
                     f"(--write): the runtime skips them; their points' chunks still run for the deeper exits")
    elif dropped:
        pos = rep["cost"].get("model_index") or list(range(len(rep["cost"]["exits"])))
        kept_indices = ",".join(str(pos[rep["cost"]["exits"].index(e)]) for e in best["exits"])
        lines.append(f"note             dropped exits ({', '.join(dropped)}) save their heads only where the runtime skips "
                     f"exits marked \"enabled\": false; the exact instance is 'mesc export --exits {kept_indices}' with "
                     f"these thresholds")
    if candidates:
        lines += _architecture_lines(rep, unit, pct)
    if rep.get("risk"):
        from mesc.calibration.exits.risk import format_risk

        lines.append(format_risk(rep["risk"], rep["risk"].get("plain"), unit))
    s = rep["search"]
    ex = sum(s["exhaustive"].values())
    what = "architectures (choices of heads)" if candidates else "exit subsets"
    lines += [f"search           {s['seconds']:.2f} s, {s['evaluated']} configurations evaluated, "
              f"{ex} of {len(s['exhaustive'])} {what} exhaustively"]
    pruned = sum((s.get("pruned") or {}).values())
    if pruned:
        rules = ", ".join(f"{v} {k}" for k, v in s["pruned"].items() if v)
        lines.append(f"                 {s['searched']} of {s['architectures']} searched, {pruned} pruned ({rules}): "
                     f"none of those could beat the choice")
    sel = rep.get("selection")
    if sel:
        lines.append(f"selection        chosen among {sel['architectures']} {what} on {sel['images']} calibration "
                     f"images ({sel['architectures_per_image']:.2g} per image)"
                     + {"high": "; new images will likely overshoot the bound: see --risk",
                        "even": "; plain thresholds sit at the bound: new images may overshoot it (--risk bounds "
                                "that)"}.get(sel.get("overshoot_risk"), ""))
    return "\n".join(lines)


def _architecture_lines(rep, unit, pct, shown: int = 10) -> list:
    """The best configuration of each choice of heads, best first, and the gain over the fixed
    heads (the first candidate at every point)."""
    archs = [a for a in rep.get("architectures") or [] if a["best"] is not None]
    if rep["objective"] == "max-drop":
        key = lambda a: (not a["meets_bound"], a["best"]["expected_cost"], -a["best"]["miou"])  # noqa: E731
    else:
        key = lambda a: (not a["meets_bound"], -a["best"]["miou"], a["best"]["expected_cost"])  # noqa: E731
    order = sorted(archs, key=key)
    lines = ["", f"architectures    the best configuration of each choice of heads ({len(archs)}; * meets the bound):"]
    rows = [("", "heads kept", "expected cost", "mIoU", "search")]
    for a in order[:shown]:
        b = a["best"]
        rows.append(("*" if a["meets_bound"] else " ", ", ".join(a["exits"]) + (" (fixed)" if a["fixed_heads"] else ""),
                     f"{b['expected_cost']:.4g} {unit}", pct(b["miou"]), f"{a['seconds']:.3f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if len(order) > shown:
        lines.append(f"  ... {len(order) - shown} more in the JSON report (--report, \"architectures\")")
    fixed, gain = rep.get("fixed_heads_best"), rep.get("gain_over_fixed_heads")
    if fixed is not None:
        short = "" if rep.get("fixed_heads_meet_bound", True) else " (misses the bound)"
        lines.append(f"fixed heads      exits {', '.join(fixed['exits'])}: expected cost {fixed['expected_cost']:.4g} "
                     f"{unit}, mIoU {pct(fixed['miou'])}{short}; the head search: {-100 * gain['cost']:+.1f}% cost, "
                     f"{gain['miou_pp']:+.2f} pp mIoU")
    return lines


# ---------------------------------------------------------------------------------------------
# plot

def plot_pareto(result, path, compare=None, title: str = "", max_points: int = 20000, exit_names=None,
                legend_heads: int = 6) -> None:
    """Expected cost vs mIoU: every evaluated configuration, the Pareto front, the single exits,
    the final exit alone, and the chosen configuration. With ``exit_names`` (a package with
    candidate heads) the front's points are coloured by the heads they keep (the
    ``legend_heads`` most frequent named, the rest grey)."""
    plt = load_pyplot()
    pts = result.points
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if len(pts) > max_points:
        sel = np.random.default_rng(0).choice(len(pts), max_points, replace=False)
        cloud = pts[sel]
    else:
        cloud = pts
    ax.scatter(cloud[:, 0], 100 * cloud[:, 1], s=4, c="0.6", alpha=0.5, lw=0, label="evaluated configurations")
    front = pts[result.pareto()]
    ax.step(front[:, 0], 100 * front[:, 1], where="post", c="tab:blue", lw=1.2, label="Pareto front")
    if exit_names is not None:
        _front_heads(ax, result, exit_names, legend_heads)
    b = np.array([[c.expected_cost, c.miou] for c in result.budgeted])
    ax.scatter(b[:, 0], 100 * b[:, 1], marker="s", c="tab:green", s=30, zorder=3, label="single exit (budgeted)")
    ref, best = result.reference, result.best
    ax.scatter([ref.expected_cost], [100 * ref.miou], marker="*", c="k", s=120, zorder=4, label="final exit only")
    for pol, r in (compare or {}).items():
        if r is not None:
            ax.scatter([r.best.expected_cost], [100 * r.best.miou], marker="x", s=50, zorder=4, label=f"{pol} policy")
    ax.scatter([best.expected_cost], [100 * best.miou], marker="o", facecolors="none", edgecolors="tab:red",
               s=160, lw=2, zorder=5, label=f"chosen ({'+'.join(best.exits)})")
    if result.objective == "max-drop":
        ax.axhline(100 * result.bound, c="tab:red", ls=":", lw=1, label="mIoU bound")
    else:
        ax.axvline(result.bound, c="tab:red", ls=":", lw=1, label="cost bound")
    lo = min(100 * float(front[:, 1].min()), 100 * best.miou) - 1
    ax.set_ylim(max(lo, 100 * float(pts[:, 1].min()) - 1), 100 * float(pts[:, 1].max()) + 0.5)
    ax.set_xlabel(f"expected cost ({best.unit})")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from mesc.package.staging import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def _front_heads(ax, result, exit_names, legend_heads: int) -> None:
    """The front's points in one colour per choice of heads (one legend entry each)."""
    front = result.pareto()
    heads = [point_heads(result, exit_names, int(result.point_subsets[i])) for i in front]
    labels = ["+".join(h) if h else "?" for h in heads]
    common = sorted(set(labels), key=lambda k: (-labels.count(k), k))[:legend_heads]
    pts = result.points[front]
    for k, label in enumerate(common):
        sel = np.array([lab == label for lab in labels])
        ax.scatter(pts[sel, 0], 100 * pts[sel, 1], s=18, zorder=3, color=f"C{k % 10}", label=f"front: {label}")
    rest = np.array([lab not in common for lab in labels])
    if rest.any():
        ax.scatter(pts[rest, 0], 100 * pts[rest, 1], s=18, zorder=3, color="0.3", label="front: other heads")


__all__ = ["IDENTITY_FIELDS", "build_report", "exit_taking_all", "format_report", "model_identity",
           "package_identity", "plot_pareto", "point_heads", "precision_of", "load_pyplot"]
