"""Candidate exit heads: several heads from the MESS exit space on each early exit point.

MESS trains the backbone once (stage 1, plain exits) and then, with the backbone and the final
head frozen, trains every candidate head of the exit space at every early point (stage 2); the
search after training keeps at most one candidate per point. A model with candidates returns, for
such a point, the list of the candidates' logits instead of one tensor (the shared model
contract); ``model.exit_configs`` lists every head's config in flattened order.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from mesc.errors import ModelLoadError
from mesc.models.heads import CandidateExits, ExitConfig

# At least four per point and light enough for the demo's early points (16 and 48 channels at
# 128x256): the reductions, 0-3 extra blocks, rapid dilation on and off and both head types are
# each represented, without the full 4 x 4 x 2 x 2 product (64 heads per point, most of them
# heavier than the backbone up to that point). The first is the demo's fixed early head, so an
# uncalibrated package (candidate 0 enabled everywhere) runs the fixed-head configuration.
DEFAULT_CANDIDATE_GRID = (
    ExitConfig(reduction=1, extra_blocks=2, rapid_dilation=True, head="fcn"),
    ExitConfig(reduction=1, extra_blocks=0, rapid_dilation=False, head="fcn"),
    ExitConfig(reduction=2, extra_blocks=1, rapid_dilation=True, head="fcn"),
    ExitConfig(reduction=2, extra_blocks=3, rapid_dilation=True, head="fcn"),
    ExitConfig(reduction=4, extra_blocks=0, rapid_dilation=False, head="deeplab"),
)


def resolve_grid(grid) -> tuple[ExitConfig, ...]:
    """The candidate configs of ``grid`` (ExitConfigs or dicts of their fields); None: the default."""
    if grid is None:
        return DEFAULT_CANDIDATE_GRID
    if isinstance(grid, (ExitConfig, dict)) or not isinstance(grid, Sequence) or not grid:
        raise ModelLoadError(f"grid must be a non-empty list of ExitConfigs (or dicts of their fields), got {grid!r}")
    return tuple(ExitConfig.coerce(g) for g in grid)


def with_candidate_heads(model: nn.Module, grid=None, points: Sequence[int] | None = None) -> nn.Module:
    """Replace the heads at early exit ``points`` (default: every early point) of a model built by
    :func:`mesc.models.multiexit.build_multi_exit` with one fresh head per config of ``grid``, in
    place; the backbone and the final head are untouched. Returns the model."""
    from mesc.models.multiexit import exit_head

    profiles = getattr(model, "exit_profiles", None)
    if profiles is None or not isinstance(getattr(model, "exits", None), nn.ModuleList):
        raise ModelLoadError(f"{type(model).__name__} was not built by mesc.models.multiexit.build_multi_exit: "
                             f"candidate heads need its exit points' profiles (channels, stride, dilation)")
    configs = resolve_grid(grid)
    early = range(len(model.exits) - 1)
    chosen = list(early) if points is None else [int(p) for p in points]
    bad = [p for p in chosen if p not in early]
    if bad or len(set(chosen)) != len(chosen):
        raise ModelLoadError(f"points must be distinct early exit points in 0..{len(model.exits) - 2} "
                             f"(the final point {len(model.exits) - 1} keeps its one head), got {list(chosen)}")
    for p in chosen:
        model.exits[p] = CandidateExits([exit_head(profiles[p], model.num_classes, cfg, model.head_channels)
                                         for cfg in configs])
    return model.train(model.training)


def exit_names(outputs) -> list[str]:
    """Each head's name in flattened order, as the manifest names them: ``exit{p}`` for a point
    with one head, ``exit{p}c{j}`` for candidate j of point p."""
    names = []
    for p, entry in enumerate(outputs):
        if isinstance(entry, (list, tuple)):
            names += [f"exit{p}c{j}" for j in range(len(entry))]
        else:
            names.append(f"exit{p}")
    return names
