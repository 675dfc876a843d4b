"""A multi-exit model's exits as training sees them: its outputs flattened to one list of heads,
and which parameters only the early heads depend on (found from the autograd graph, so no
attribute names are assumed)."""

from __future__ import annotations

import torch


def exit_points(outputs) -> list:
    """The model's exit points in order, whatever sequence type it returns; an entry is one
    tensor, or a list of candidate heads' tensors."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def as_exit_list(outputs) -> list:
    """Every head's logits in flattened order: point by point, candidates in order."""
    flat = []
    for entry in exit_points(outputs):
        flat += list(entry) if isinstance(entry, (list, tuple)) else [entry]
    return flat


def early_exit_parameters(model, sample) -> tuple[list, list]:
    """Split parameters into ``(shared, early)``: ``shared`` = everything the final exit depends
    on (backbone and final head), ``early`` = parameters only early exits depend on.

    Found by asking autograd which parameters each exit's output reaches, on one sample batch,
    so it works for any architecture (skip connections, parallel branches, shared heads).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no BatchNorm statistics update from this probe
    try:
        outs = as_exit_list(model(sample))
        used = []
        for out in outs:
            grads = torch.autograd.grad(out.float().sum(), params, retain_graph=True, allow_unused=True)
            used.append({id(p) for p, g in zip(params, grads) if g is not None})
    finally:
        model.train(was_training)
    final = used[-1]
    early_ids = set().union(*used[:-1]) - final if len(used) > 1 else set()
    return [p for p in params if id(p) not in early_ids], [p for p in params if id(p) in early_ids]


def freeze_norm_stats(model, trainable_ids: set) -> None:
    """Keep normalisation layers of the frozen part in eval mode: frozen weights with drifting
    running statistics would silently change the final exit in stage 2."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            if not any(id(p) in trainable_ids for p in m.parameters(recurse=False)):
                m.eval()
