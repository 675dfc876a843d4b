"""Segmentation data sets in their published on-disk layouts, read as ``(image path, mask)``
pairs: a mask is an id-PNG path, a :class:`~mesc.datasets.labels.Label` decoded on read, or None.

numpy and PIL only (scipy and pycocotools, the ``[data]`` extra, only for SBD and COCO masks):
the runtime reads folders through here too.
"""

from __future__ import annotations

from pathlib import Path

from mesc.datasets import cityscapes, coco
from mesc.datasets.files import read_classes
from mesc.datasets.generic import Folders, Plain
from mesc.datasets.labels import Label
from mesc.datasets.voc import SBD, VOC
from mesc.errors import MescError

# detection order: the first layout whose markers a folder holds; Plain takes any folder
LAYOUTS = (cityscapes, VOC, SBD, coco, Folders, Plain)


def detect(path):
    """``(layout, dataset root)`` of a data folder (the root may be a nested VOCdevkit/VOC2012)."""
    root = Path(path)
    if not root.is_dir():
        raise MescError(f"data folder {root} does not exist or is not a directory")
    for layout in LAYOUTS:
        found = layout.detect(root)
        if found is not None:
            return layout, found
    raise AssertionError("Plain accepts every folder")


def classes(layout, root) -> list[str] | None:
    """The layout's class names, or a generic folder's ``classes.txt``."""
    fixed = getattr(layout, "CLASSES", None)
    return list(fixed) if fixed is not None else read_classes(root)


def read_class_names(path) -> list[str]:
    """Class names for ``mesc export --class-names``: a classes file (one name per line, blank
    lines skipped), or a data folder: its ``classes.txt`` (synth-data, generic folders) or its
    layout's fixed names (Cityscapes, VOC, ...). Raises ``ValueError`` where there are none."""
    p = Path(path)
    if p.is_dir():
        layout, root = detect(p)
        names = classes(layout, root)
        if not names:
            raise ValueError(f"{p}: a folder without classes.txt or a layout with fixed class names")
        return list(names)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{p}: cannot read the classes file ({err})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{p}: the classes file names no class")
    return names


def read_pairs(path, split: str | None = None):
    """``(layout, root, pairs)`` of one split (None: every split the layout holds)."""
    layout, root = detect(path)
    if split is not None and split not in layout.splits(root):
        if layout in (Folders, Plain) and (root / split).is_dir():
            # a generic folder split into sub-folders (train/, val/): each is a folder of its own
            return read_pairs(root / split)
        known = ", ".join(layout.splits(root)) or "none"
        raise MescError(f"data folder {path} ({layout.FORMAT}) has no split {split!r} (splits: {known})")
    return layout, root, layout.read(root, split)


def read_folder(path, require_masks: bool = False, split: str | None = None) -> list:
    """List ``(image, mask or None)`` pairs in a data folder (see :func:`read_pairs`)."""
    _, root, pairs = read_pairs(path, split)
    if not pairs:
        raise MescError(f"data folder {root} holds no images (expected images/*.png, "
                        f"leftImg8bit/**/*_leftImg8bit.png, a VOC, SBD or COCO tree, or image files)")
    gone = [str(img) for img, _ in pairs if not Path(img).is_file()]
    if gone:  # a split list or an annotation file names images that are not there
        more = f" and {len(gone) - 10} more" if len(gone) > 10 else ""
        raise MescError(f"data folder {root}: {len(gone)} of {len(pairs)} images its split lists are missing: "
                        f"{', '.join(gone[:10])}{more} (mesc data check lists them)")
    if require_masks:
        missing = [str(img) for img, mask in pairs if mask is None]
        if missing:
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise MescError(f"data folder {root}: {len(missing)} of {len(pairs)} images have no mask "
                            f"(expected masks/<name>.png, gtFine/**/*_gtFine_label(Train)Ids.png, "
                            f"SegmentationClass/<name>.png or cls/<name>.mat): "
                            f"{', '.join(missing[:10])}{more}")
    return pairs


__all__ = ["LAYOUTS", "Label", "classes", "read_class_names", "detect", "read_folder", "read_pairs"]
