"""Per-exit accuracy of a torch model on a labelled folder: every head's mIoU (the validation
column of the training log and the summary), each image's pixel accuracy per exit, and the
tables ``mesc train`` prints. ``mesc eval`` scores an exported package instead
(:mod:`mesc.evaluation.evaluate`)."""

from __future__ import annotations

import numpy as np
import torch

from mesc.datasets.labels import IGNORE
from mesc.errors import MescError
from mesc.evaluation.metrics import confusion_matrix, miou_from_confusion
from mesc.training.data import SegData, normalization_of, to_input
from mesc.training.exits import as_exit_list, exit_points


@torch.no_grad()
def predict_exits(model, images: np.ndarray, batch: int = 8, names: list | None = None) -> list[np.ndarray]:
    """Per head (candidates flattened), the argmax labels (N x H x W uint8) for N x H x W x 3
    uint8 images. ``names``, a list, receives the heads' names (``exit{p}``, ``exit{p}c{j}``)."""
    from mesc.models.candidates import exit_names

    model.eval()
    norm = normalization_of(model)
    per_exit = None
    device = next(model.parameters()).device
    for s in range(0, len(images), batch):
        points = exit_points(model(to_input(images[s: s + batch], norm).to(device)))
        if names is not None and per_exit is None:
            names += exit_names(points)
        labels = [o.argmax(1).to(torch.uint8).cpu().numpy() for o in as_exit_list(points)]
        per_exit = [[lab] for lab in labels] if per_exit is None else [a + [b] for a, b in zip(per_exit, labels)]
    return [np.concatenate(chunks) for chunks in per_exit]


def evaluate(model, data_dir, batch: int = 8, progress: bool = False) -> dict:
    """Per-exit mIoU over a labelled folder, plus each image's pixel accuracy per exit.

    Returns ``{"miou": [..per head..], "names": [..per head..], "pixel_acc": E x N array,
    "difficulty": [..] or None, "files": [...]}``; a point with candidate heads has one entry
    per candidate (``exit{p}c{j}``).
    """
    data = SegData(data_dir) if not isinstance(data_dir, SegData) else data_dir
    names: list = []
    preds = predict_exits(model, data.images, batch, names)
    labelled = data.masks != IGNORE
    num_classes = int(max(data.masks[labelled].max(initial=0),
                          max(int(p.max(initial=0)) for p in preds)) + 1)
    miou = [miou_from_confusion(confusion_matrix(p, data.masks, num_classes, IGNORE)) for p in preds]
    hits = [((p == data.masks) & labelled).sum((1, 2)) / np.maximum(labelled.sum((1, 2)), 1) for p in preds]
    return {"miou": miou, "names": names, "pixel_acc": np.stack(hits), "difficulty": data.difficulty,
            "files": [str(f) for f in data.files]}


def evaluate_miou(model, data_dir, progress: bool = False, log=print) -> list[float]:
    """Per-exit mIoU on a labelled folder, printed as a table when ``log`` is given."""
    result = evaluate(model, data_dir, progress=progress)
    if log:
        log(format_miou_table(result["miou"], result["names"]))
    return result["miou"]


def format_miou_table(miou, names=None) -> str:
    names = names or [f"exit{k}" for k in range(len(miou))]
    width = max(6, *(len(n) for n in names))
    lines = [f"{'exit':<{width}}   mIoU", f"{'-' * width}  ------"]
    lines += [f"{n:<{width}}  {100 * m:5.1f}%" for n, m in zip(names, miou)]
    return "\n".join(lines)


def difficulty_table(result: dict, bins=(0.0, 0.25, 0.5, 0.75, 1.0), threshold: float = 0.9) -> str:
    """Share of images each exit gets right (pixel accuracy >= ``threshold``) per difficulty bin:
    the evidence that easy inputs can leave early."""
    if result["difficulty"] is None:
        raise MescError("the data folder has no meta.json with per-image difficulty")
    d = np.asarray(result["difficulty"])
    ok = result["pixel_acc"] >= threshold
    names = result.get("names") or [f"exit{k}" for k in range(len(ok))]
    head = "difficulty    n  " + "  ".join(f"{n:>5}" for n in names)
    lines = [head, "-" * len(head)]
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & ((d < hi) if hi < bins[-1] else (d <= hi))
        if sel.any():
            lines.append(f"{lo:.2f}-{hi:.2f}  {sel.sum():4d}  "
                         + "  ".join(f"{100 * ok[k, sel].mean():{max(5, len(n)) - 1}.0f}%"
                                     for k, n in enumerate(names)))
    return "\n".join(lines)
