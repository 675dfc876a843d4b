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
import json
import numbers
import re
from pathlib import Path

import numpy as np

from mesc.datasets.labels import IGNORE, Label
from mesc.errors import MescError

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


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _segmentation_problem(seg) -> str | None:
    """Why ``seg`` is neither COCO polygons nor RLE (None when it is one of them)."""
    if isinstance(seg, list):  # polygons: [[x1, y1, x2, y2, ...], ...], each a closed outline
        if seg and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            return None
        return "polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists of at least 3 points"
    if isinstance(seg, dict):  # RLE: {"counts": str (compressed) or [int, ...], "size": [h, w]}
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)):
            return f"RLE 'size' must be [height, width], got {size!r}"
        if isinstance(counts, str) or (isinstance(counts, list) and all(isinstance(c, int) for c in counts)):
            return None
        return f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}"
    return f"neither polygons (a list) nor RLE (a dict with 'counts' and 'size'), got {type(seg).__name__}"


def check_annotations(data, path) -> None:
    """Refuse an annotation file pycocotools would fail on deep inside (or read as nonsense),
    naming the file, the entry and the field: a JSON object with lists ``images`` (``id``,
    ``file_name``, positive ``height``/``width``) and ``annotations`` (``image_id``,
    ``category_id``, ``area``, ``segmentation`` as polygons or RLE)."""
    if not isinstance(data, dict):
        raise MescError(f"COCO annotations {path}: expected a JSON object with 'images' and 'annotations', "
                        f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise MescError(f"COCO annotations {path}: '{key}' must be a list, got {type(data[key]).__name__}")
    if not isinstance(data.get("images"), list):
        raise MescError(f"COCO annotations {path}: no 'images' list")
    ids = set()
    for i, img in enumerate(data["images"]):
        where = f"COCO annotations {path}: images[{i}]"
        if not isinstance(img, dict):
            raise MescError(f"{where} must be an object, got {type(img).__name__}")
        for key in ("id", "file_name", "height", "width"):
            if key not in img:
                raise MescError(f"{where} (id {img.get('id')!r}) has no '{key}'")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise MescError(f"{where} (id {img['id']!r}): 'file_name' must be a file name, got {img['file_name']!r}")
        for key in ("height", "width"):
            if not isinstance(img[key], int) or isinstance(img[key], bool) or img[key] < 1:
                raise MescError(f"{where} (id {img['id']!r}): '{key}' must be a positive integer, got {img[key]!r}")
        ids.add(img["id"])
    for i, ann in enumerate(data.get("annotations") or []):
        where = f"COCO annotations {path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise MescError(f"{where} must be an object, got {type(ann).__name__}")
        where += f" (id {ann.get('id')!r})"
        for key in ("image_id", "category_id", "segmentation"):
            if key not in ann:
                raise MescError(f"{where} has no '{key}'")
        if ann["image_id"] not in ids:
            raise MescError(f"{where}: 'image_id' {ann['image_id']!r} is no image of the file")
        if not isinstance(ann["category_id"], int) or isinstance(ann["category_id"], bool):
            raise MescError(f"{where}: 'category_id' must be an integer, got {ann['category_id']!r}")
        if not _is_number(ann.get("area", 0)):
            raise MescError(f"{where}: 'area' must be a number, got {ann['area']!r}")
        why = _segmentation_problem(ann["segmentation"])
        if why:
            raise MescError(f"{where}: 'segmentation' is {why}" if why.startswith("neither")
                            else f"{where}: 'segmentation': {why}")


@functools.lru_cache(maxsize=4)
def _coco(path: str, mtime_ns: int):
    from mesc.lazy import require

    coco_api = require("pycocotools.coco", extra="data", purpose="reading COCO annotations")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # truncated or not JSON
        raise MescError(f"COCO annotations {path}: not a valid JSON file ({err})") from None
    check_annotations(data, path)
    coco = coco_api.COCO()  # the annotations already read and checked: indexed as COCO(path) would
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints its progress
        coco.createIndex()
    return coco


def _index(path: Path):
    return _coco(str(path), path.stat().st_mtime_ns)


def voc_mask(coco, image_id: int, where: str = "COCO annotations") -> np.ndarray:
    """The VOC class-id mask of one COCO image (rules in the module docstring)."""
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), np.uint8)

    def drawn(ann):
        try:
            m = coco.annToMask(ann)
        except Exception as err:  # noqa: BLE001  (pycocotools raises many types on malformed coordinates)
            raise MescError(f"{where}: annotation {ann.get('id')!r} of image {image_id!r}: its segmentation "
                            f"cannot be drawn ({type(err).__name__}: {err})") from None
        if m.shape != mask.shape:  # an RLE of another size than its image
            raise MescError(f"{where}: annotation {ann.get('id')!r} of image {image_id!r} is {m.shape[1]}x{m.shape[0]} "
                            f"(WxH), its image {mask.shape[1]}x{mask.shape[0]}")
        return m > 0

    anns = [a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in VOC_ID]
    for ann in [a for a in anns if a.get("iscrowd")]:
        mask[drawn(ann)] = IGNORE
    # stable sort: among equal areas, annotation order is kept and the later one paints last
    for ann in sorted((a for a in anns if not a.get("iscrowd")), key=lambda a: -a.get("area", 0)):
        mask[drawn(ann)] = VOC_ID[ann["category_id"]]
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
    return voc_mask(_index(path), image_id, f"COCO annotations {path}")
