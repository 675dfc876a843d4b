"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/``
``*_gtFine_labelTrainIds.png`` (used as is) or else ``*_gtFine_labelIds.png`` (mapped to the 19
train ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.datasets.files import images_in
from mesc.datasets.images import load_mask
from mesc.datasets.labels import IGNORE, Label

FORMAT = "cityscapes"
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
           "bicycle")
# labelId -> trainId, from cityscapesScripts' helpers/labels.py (ids 0..33; every id not listed,
# the void and rare classes and the licence plate's -1, is ignored in training and evaluation)
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LUT = np.full(256, IGNORE, np.uint8)
for _label_id, _train_id in TRAIN_IDS.items():
    LUT[_label_id] = _train_id

SUFFIX = "_leftImg8bit.png"


def detect(root: Path) -> Path | None:
    return root if (root / "leftImg8bit").is_dir() else None


def splits(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())


# every labelId cityscapesScripts defines (0..33; the licence plate's -1 is stored as 255)
KNOWN_LABEL_IDS = set(range(34)) | {IGNORE}


def _label_ids(path: Path) -> np.ndarray:
    return LUT[load_mask(path)]


def _unknown_label_ids(path: Path) -> list:
    return sorted(int(i) for i in np.unique(load_mask(path)) if int(i) not in KNOWN_LABEL_IDS)


def _mask(root: Path, img: Path):
    rel = img.relative_to(root / "leftImg8bit")
    stem = root / "gtFine" / rel.parent / img.name[: -len(SUFFIX)]
    train_ids = Path(f"{stem}_gtFine_labelTrainIds.png")
    if train_ids.is_file():
        return train_ids
    label_ids = Path(f"{stem}_gtFine_labelIds.png")
    return (Label(label_ids, lambda: _label_ids(label_ids), unknown=lambda: _unknown_label_ids(label_ids))
            if label_ids.is_file() else None)


def read(root: Path, split: str | None):
    """All splits merged when ``split`` is None."""
    folder = root / "leftImg8bit" if split is None else root / "leftImg8bit" / split
    return [(img, _mask(root, img)) for img in images_in(folder, SUFFIX)]
