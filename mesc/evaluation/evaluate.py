"""``mesc eval``: accuracy per exit and per class as the field reports it.

Every exit runs once over a labelled set (the memo's runner,
:func:`~mesc.calibration.exits.memo.exit_results`) and is scored at the labels' original
resolution (:mod:`mesc.evaluation.scoring`: logits resized bilinearly to the mask, then argmax;
masks are never resized). Reported:

* **budgeted**, per exit: every image leaves there;
* **policy**: the package's input-dependent policy as the runtime applies it (its thresholds,
  its enabled exits: an image leaves at the first enabled exit whose image confidence reaches
  ``th_img``, the final exit takes the rest).

Per row: mIoU, pixel accuracy and the IoU of every class, from summed confusion matrices
(:mod:`mesc.evaluation.metrics`), so one image's share is its pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesc.calibration.exits import memo as memo_mod
from mesc.errors import MescError
from mesc.evaluation.metrics import IGNORE_INDEX, counts_from_confusion, miou
from mesc.progress import bar as progress_bar
from mesc.evaluation.scoring import confusion_at_mask
from mesc.timestamps import utc_now

POLICY_ROW = "policy"


@dataclass
class Evaluation:
    exits: list            # exit names, shallow to deep
    classes: list          # class names
    budgeted: np.ndarray   # E x C x C confusion (rows: target), every image at each exit
    policy: np.ndarray     # C x C confusion of the images at the exits the policy chose
    policy_exits: dict     # exit name -> images the policy sent out there
    images: int
    meta: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One row per exit (budgeted), then the policy's: mIoU, pixel accuracy, class IoU."""
        named = [(name, "budgeted", cm) for name, cm in zip(self.exits, self.budgeted)]
        return [_row(name, mode, cm) for name, mode, cm in named + [(POLICY_ROW, "input-dependent", self.policy)]]

    def to_dict(self) -> dict:
        return {"created": utc_now(), "images": self.images, "exits": self.exits, "classes": self.classes,
                "rows": self.rows(),
                "policy_exits": {name: {"images": n, "fraction": n / self.images if self.images else 0.0}
                                 for name, n in self.policy_exits.items()},
                **self.meta}


def _row(name: str, mode: str, cm: np.ndarray) -> dict:
    inter, union = counts_from_confusion(cm)
    total = int(cm.sum())
    return {"name": name, "mode": mode, "miou": float(miou(inter, union, empty=np.nan)),
            "pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
            "class_iou": [float(i / u) if u else None for i, u in zip(inter, union)],
            "pixels": total}


def policy_choice(pkg, confidences: dict) -> int:
    """The exit position the runtime's input-dependent mode picks for an image whose image
    confidences (scores) per exit name are ``confidences``: the first enabled non-final exit
    whose policy lets it go (:func:`mesc.policy.exit_decision`), else the final exit."""
    from mesc.policy import exit_decision

    last = len(pkg.exits) - 1
    for e, ex in enumerate(pkg.exits[:-1]):
        if ex.enabled is False:
            continue
        conf = confidences.get(ex.name)
        if conf is not None and exit_decision([conf], ex.policy)[0]:
            return e
    return last


def check_json_output(path, force: bool, package, data) -> None:
    from mesc.package.outputs import check_file_output

    check_file_output(path, "--json", force, inputs=[("PACKAGE", package), ("--data", data)])


def _labelled(items, data) -> list:
    """Refuse a batch holding a mask without a labelled pixel, before it runs: as calibrate does,
    since such an image has nothing to score and would leave every figure silently unchanged
    (a mask that is all 255 is more often a wrong mask folder than an image with nothing in it)."""
    empty = memo_mod.unlabelled_masks([(name, mask) for name, _, mask in items])
    if empty:
        shown = ", ".join(Path(str(n)).name for n in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise MescError(f"{len(empty)} mask(s) in {data} have no labelled pixel (every pixel is "
                        f"{IGNORE_INDEX}, ignored): {shown}; there is nothing to score on such an image: "
                        f"fix its mask or remove it")
    return items


def evaluate_package(package, data, split: str | None = None, resize: bool = False, backend: str = "onnxruntime",
                     device="cpu", batch: int = 8, limit: int | None = None, json=None, force: bool = False,
                     progress: bool = False, threads: int | None = None) -> Evaluation:
    """Score every exit of ``package`` and its input-dependent policy on the labelled folder
    ``data`` (its ``split``, where given). ``resize`` resizes the images
    to the package input (bilinear); ``json`` (checked before any work, replaced only with
    ``force``) receives :meth:`Evaluation.to_dict`. Images are read one batch at a time."""
    from mesc import datasets
    from mesc.package import Package

    from mesc.ranges import check_int

    check_int("--limit", limit, 1, optional=True)
    check_int("--batch", batch, 1)
    root = package.root if isinstance(package, Package) else package
    if json is not None:
        check_json_output(json, force, root, data)
    pkg = package if isinstance(package, Package) else Package.load(package)
    num_classes = memo_mod.package_classes(pkg)
    _, _, h, w = pkg.input.shape
    pairs = memo_mod.calibration_pairs(data, limit, split)
    names = datasets.classes(*datasets.detect(data))  # a published layout's own, or classes.txt
    classes = names if names and len(names) == num_classes else [str(k) for k in range(num_classes)]

    pipe = memo_mod.open_pipeline(pkg, backend, device, threads)
    e_count = len(pipe.exit_names)
    budgeted = np.zeros((e_count, num_classes, num_classes), np.int64)
    policy = np.zeros((num_classes, num_classes), np.int64)
    taken = np.zeros(e_count, np.int64)
    pending: dict = {}   # image row -> its confusion at every exit so far (a batch at most)
    scoring = 0.0
    t0 = time.perf_counter()
    parts = (_labelled([memo_mod.load_item(img, mask, (h, w), num_classes, resize) for img, mask in part], data)
             for part in memo_mod.batches(pipe, pairs, batch))
    bar = progress_bar(len(pairs), "eval: run exits", "img", show=progress)
    try:
        for i, e, r, mask in memo_mod.exit_results(pipe, parts, bar):
            ts = time.perf_counter()
            cm = confusion_at_mask(np.asarray(r.logits, dtype=np.float32), mask, num_classes, r.labels)
            scoring += time.perf_counter() - ts
            budgeted[e] += cm
            pending.setdefault(i, []).append(cm)
            if e == e_count - 1:  # every exit has reported this image: its confidences are all known
                chosen = policy_choice(pkg, r.confidences)
                policy += pending.pop(i)[chosen]
                taken[chosen] += 1
    finally:
        bar.close()
        pipe.close()
    seconds = time.perf_counter() - t0
    meta = {"package": str(pkg.root), "data": str(data), "split": split, "resize": bool(resize),
            "backend": pipe.runner.backend, "device": str(pipe.runner.device),
            "thresholds": {ex.name: {"enabled": ex.enabled is not False,
                                        "kind": ex.policy.get("kind", "mess"),
                                        **{k: ex.policy.get(k) for k in ("th_pix", "th_img", "lo", "hi")
                                           if k in ex.policy or k in ("th_pix", "th_img")}}
                           for ex in pkg.exits},
            "seconds": round(seconds, 3), "scoring_seconds": round(scoring, 3)}
    ev = Evaluation(pipe.exit_names, classes, budgeted, policy,
                    dict(zip(pipe.exit_names, taken.tolist())), len(pairs), meta)
    if json is not None:
        from mesc.package.staging import write_json_atomic

        write_json_atomic(json, ev.to_dict())
    return ev


def format_table(ev: Evaluation) -> str:
    """The rows as text: one line per exit and the policy, then IoU per class (columns: rows)."""
    rows = ev.rows()
    pct = lambda x: "    -" if x is None or x != x else f"{100 * x:5.1f}"  # noqa: E731
    width = max(12, *(len(c) for c in ev.classes), *(len(r["name"]) for r in rows))
    lines = [f"{ev.images} images, scored at the masks' resolution ({ev.meta.get('backend')}, "
             f"{ev.meta.get('device')})", "",
             f"{'':{width}}  {'mode':15}  {'mIoU':>5}  {'pixacc':>6}"]
    for r in rows:
        lines.append(f"{r['name']:{width}}  {r['mode']:15}  {pct(r['miou'])}  {pct(r['pixel_accuracy']):>6}")
    shares = ", ".join(f"{name} {n}" for name, n in ev.policy_exits.items())
    lines += [f"policy exits taken: {shares}", "", "IoU per class (%)",
              f"{'class':{width}}  " + "  ".join(f"{r['name']:>8}" for r in rows)]
    for k, name in enumerate(ev.classes):
        lines.append(f"{name:{width}}  " + "  ".join(f"{pct(r['class_iou'][k]):>8}" for r in rows))
    return "\n".join(lines)


__all__ = ["Evaluation", "POLICY_ROW", "evaluate_package", "format_table", "policy_choice"]
