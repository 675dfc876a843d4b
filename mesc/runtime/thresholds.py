"""Threshold lists as people write them: one value for every exit, or one per exit,
comma-separated in exit order. ``mesc run``'s options and the served model's request parameters
both accept this form; their wrappers add where the value came from to the message."""

from __future__ import annotations


def parse_threshold_list(text) -> list[float]:
    """``"0.8"`` or ``"0.8,0.85,0"`` -> floats in [0, 1]; ValueError saying what is wrong."""
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a number in [0, 1] or one per exit (comma-separated, e.g. 0.8,0.85,0), "
                         f"got {text!r}") from None
    # NaN fails every comparison, so the range check also refuses it
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise ValueError(f"thresholds must be in [0, 1] (one, or one per exit), got {text!r}")
    return vals


def per_exit(vals: list[float], exit_names: list[str]) -> list[float]:
    """One value per exit: a single value repeated, or exactly as many as there are exits."""
    n = len(exit_names)
    if len(vals) not in (1, n):
        raise ValueError(f"{len(vals)} values for {n} exits ({', '.join(exit_names)}); give one, or one per exit")
    return list(vals) * n if len(vals) == 1 else list(vals)
