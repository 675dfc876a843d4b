"""What a data folder holds, for ``mesc data check``: format, split sizes, classes, the label
histogram (pixel share per class and of ignored pixels), the images without labels, the images
a split lists that are not on disk, and label ids outside the layout's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.datasets import classes, detect, read_pairs
from mesc.datasets.images import image_size, load_mask
from mesc.datasets.labels import IGNORE, Label


def check(path, split: str | None = None) -> dict:
    """Reads every mask of ``split`` (None: all); sizes are checked against the images'."""
    layout, root = detect(path)
    sizes = {s: len(layout.read(root, s)) for s in layout.splits(root)}
    _, _, pairs = read_pairs(path, split)
    counts = np.zeros(256, np.int64)
    unlabelled, missing, raw_unknown = [], [], {}
    for image, mask in pairs:
        if not Path(image).is_file():  # listed by the split (or its annotations), not on disk
            missing.append(str(image))
            continue
        if mask is None:
            unlabelled.append(str(image))
            continue
        counts += np.bincount(load_mask(mask, image_size(image)).ravel(), minlength=256)
        for i in (mask.unknown() if isinstance(mask, Label) and mask.unknown else ()):
            raw_unknown.setdefault(i, str(mask))
    names = classes(layout, root)
    total = int(counts.sum())
    share = (lambda n: round(n / total, 6)) if total else (lambda n: 0.0)
    ids = range(len(names)) if names else [i for i in range(IGNORE) if counts[i]]
    histogram = [{"id": i, "name": names[i] if names else str(i), "share": share(int(counts[i]))} for i in ids]
    unknown = [i for i in range(IGNORE) if counts[i] and names and i >= len(names)]
    return {"path": str(path), "root": str(root), "format": layout.FORMAT, "split": split, "splits": sizes,
            "images": len(pairs), "labelled": len(pairs) - len(unlabelled) - len(missing), "classes": names,
            "pixels": total, "histogram": histogram, "ignore_share": share(int(counts[IGNORE])),
            "unknown_ids": unknown, "unknown_label_ids": {str(k): v for k, v in sorted(raw_unknown.items())},
            "without_labels": unlabelled, "missing": missing}


def format_check(rep: dict) -> str:
    """The report as a table."""
    splits = ", ".join(f"{k} {v}" for k, v in rep["splits"].items()) or "none"
    lines = [f"{rep['path']}: {rep['format']} (root {rep['root']})",
             f"splits: {splits}",
             f"split {rep['split'] or 'all'}: {rep['images']} images, {rep['labelled']} labelled",
             f"classes: {len(rep['classes']) if rep['classes'] else 'unnamed'}",
             f"{'id':>4}  {'class':<16} {'pixels %':>9}"]
    lines += [f"{h['id']:>4}  {h['name']:<16} {100 * h['share']:>9.3f}" for h in rep["histogram"]]
    lines.append(f"{255:>4}  {'(ignore)':<16} {100 * rep['ignore_share']:>9.3f}")
    if rep["unknown_ids"]:
        lines.append(f"ids outside the classes: {rep['unknown_ids']}")
    if rep["unknown_label_ids"]:
        lines.append(f"label ids the {rep['format']} table does not know (read as ignore): "
                     + ", ".join(f"{k} (e.g. in {v})" for k, v in rep["unknown_label_ids"].items()))
    if rep["missing"]:
        more = len(rep["missing"]) - 10
        lines.append(f"{len(rep['missing'])} images listed but missing: "
                     + ", ".join(rep["missing"][:10]) + (f" and {more} more" if more > 0 else ""))
    if rep["without_labels"]:
        more = len(rep["without_labels"]) - 10
        lines.append(f"{len(rep['without_labels'])} images without labels: "
                     + ", ".join(rep["without_labels"][:10]) + (f" and {more} more" if more > 0 else ""))
    return "\n".join(lines)
