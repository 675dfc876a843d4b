"""Pascal VOC 2012 (``JPEGImages``, ``SegmentationClass`` palette PNGs read as indices, 255 on
object borders = ignore, ``ImageSets/Segmentation/<split>.txt``) and the SBD augmented set
(``img/*.jpg``, ``cls/*.mat`` class maps, ``<split>.txt``): 21 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.datasets.files import read_list
from mesc.datasets.labels import Label
from mesc.errors import MescError

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor")


def _find(root: Path, marker, nests) -> Path | None:
    """``root`` or the first of its ``nests`` that holds every ``marker`` folder."""
    for base in (root, *(root / n for n in nests)):
        if all((base / m).is_dir() for m in marker):
            return base
    return None


def _lists(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


def _read_split(lists: dict[str, Path], split: str | None) -> list[str]:
    """The names of ``split``; None: every listed name once, in list order."""
    if split is not None:
        return read_list(lists[split])
    return list(dict.fromkeys(n for p in lists.values() for n in read_list(p)))


class VOC:
    FORMAT = "voc"
    CLASSES = CLASSES

    @staticmethod
    def detect(root: Path) -> Path | None:
        return _find(root, ("JPEGImages", "SegmentationClass"), ("VOC2012", "VOCdevkit/VOC2012"))

    @staticmethod
    def splits(root: Path) -> list[str]:
        return sorted(_lists(root / "ImageSets" / "Segmentation"))

    @staticmethod
    def read(root: Path, split: str | None):
        lists = _lists(root / "ImageSets" / "Segmentation")
        names = (_read_split(lists, split) if lists
                 else sorted(p.stem for p in (root / "SegmentationClass").glob("*.png")))
        pairs = []
        for name in names:
            mask = root / "SegmentationClass" / f"{name}.png"
            pairs.append((root / "JPEGImages" / f"{name}.jpg", mask if mask.is_file() else None))
        return pairs


def read_sbd_mat(path) -> np.ndarray:
    """An SBD class map: ``GTcls.Segmentation`` of a ``cls/*.mat`` file; a corrupt or incomplete
    file is a :class:`MescError` naming it and what is missing."""
    from mesc.lazy import require

    sio = require("scipy.io", extra="data", purpose="reading SBD .mat masks")
    try:
        mat = sio.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise MescError(f"SBD mask {path}: file not found") from None
    except Exception as err:  # noqa: BLE001  (scipy raises many types for a truncated or foreign file)
        raise MescError(f"SBD mask {path}: not a readable MATLAB file ({type(err).__name__}: {err})") from None
    gt = mat.get("GTcls")
    seg = getattr(gt, "Segmentation", None)
    if gt is None or seg is None:
        what = "no 'GTcls' struct" if gt is None else "'GTcls' has no 'Segmentation' field"
        raise MescError(f"SBD mask {path}: {what} (an SBD cls/*.mat file holds GTcls.Segmentation)")
    seg = np.asarray(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer) or seg.size == 0 or seg.min() < 0 or seg.max() > 255:
        raise MescError(f"SBD mask {path}: GTcls.Segmentation must be a 2-D map of class ids 0..255, got "
                        f"{seg.dtype} {seg.shape}")
    return seg


class SBD:
    FORMAT = "sbd"
    CLASSES = CLASSES

    @staticmethod
    def detect(root: Path) -> Path | None:
        return _find(root, ("img", "cls"), ("dataset", "benchmark_RELEASE/dataset"))

    @staticmethod
    def splits(root: Path) -> list[str]:
        return sorted(_lists(root))

    @staticmethod
    def read(root: Path, split: str | None):
        lists = _lists(root)
        names = _read_split(lists, split) if lists else sorted(p.stem for p in (root / "cls").glob("*.mat"))
        pairs = []
        for name in names:
            mat = root / "cls" / f"{name}.mat"
            pairs.append((root / "img" / f"{name}.jpg",
                          Label(mat, lambda mat=mat: read_sbd_mat(mat)) if mat.is_file() else None))
        return pairs
