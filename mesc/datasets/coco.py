"""MS COCO (``annotations/instances_<split><year>.json`` + ``<split><year>/`` images) converted
to the 21 Pascal VOC classes, as the MESS paper trains on it: the 20 VOC categories keep their
VOC ids, every other category is background.

Overlaps: instances are painted in order of decreasing area, so a smaller instance (usually the
one in front) keeps its pixels over a larger one it overlaps; equal areas: the later annotation
wins. Crowd regions (``iscrowd``) of VOC categories are painted first as 255 (ignore): they mix
objects and background, and any single instance drawn over them keeps its class.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path

import numpy as np

from mesc.datasets.labels import IGNORE, Label

FORMAT = "coco"
# VOC class id -> COCO category id (as torchvision's references/segmentation/coco_utils.py CAT_LIST)
COCO_IDS = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
VOC_ID = {coco: voc for voc, coco in enumerate(COCO_IDS) if coco}
_ANNOTATIONS = re.compile(r"instances_([a-z]+)(\d*)\.json$")


def detect(root: Path) -> Path | None:
    return root if _files(root) else None


def _files(root: Path) -> dict[str, Path]:
    """split -> its annotation file (``instances_val2017.json`` -> ``val``)."""
    folder = root / "annotations"
    if not folder.is_dir():
        return {}
    return {m.group(1): p for p in sorted(folder.glob("instances_*.json")) if (m := _ANNOTATIONS.search(p.name))}


def splits(root: Path) -> list[str]:
    return sorted(_files(root))


@functools.lru_cache(maxsize=4)
def _coco(path: str, mtime_ns: int):
    from mesc.lazy import require

    coco_api = require("pycocotools.coco", extra="data", purpose="reading COCO annotations")
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
        return coco_api.COCO(path)


def _index(path: Path):
    return _coco(str(path), path.stat().st_mtime_ns)


def voc_mask(coco, image_id: int) -> np.ndarray:
    """The VOC class-id mask of one COCO image (rules in the module docstring)."""
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), np.uint8)
    anns = [a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in VOC_ID]
    for ann in [a for a in anns if a.get("iscrowd")]:
        mask[coco.annToMask(ann) > 0] = IGNORE
    # stable sort: among equal areas, annotation order is kept and the later one paints last
    for ann in sorted((a for a in anns if not a.get("iscrowd")), key=lambda a: -a["area"]):
        mask[coco.annToMask(ann) > 0] = VOC_ID[ann["category_id"]]
    return mask


def read(root: Path, split: str | None):
    files = _files(root)
    pairs = []
    for name in ([split] if split is not None else sorted(files)):
        path = files[name]
        coco = _index(path)
        folder = root / path.name[len("instances_"):-len(".json")]
        for image_id in sorted(coco.imgs, key=lambda i: coco.imgs[i]["file_name"]):
            pairs.append((folder / coco.imgs[image_id]["file_name"],
                          Label(path, functools.partial(_decode, path, image_id), key=str(image_id))))
    return pairs


def _decode(path: Path, image_id: int) -> np.ndarray:
    return voc_mask(_index(path), image_id)
