"""Masks that are not id PNGs (Cityscapes labelIds, SBD .mat files, COCO polygons and RLE):
decoded to HxW uint8 class ids (255 = ignore) when read.

A :class:`Label` stands where an id PNG's path stands in ``read_folder``'s pairs, so callers
that stat, print or load a mask path (``mesc.datasets.images.load_mask``) handle both alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mesc.errors import MescError

IGNORE = 255


def check_mask_shape(mask: np.ndarray, shape, path) -> np.ndarray:
    """Refuse a mask whose size differs from its image's ``shape`` (H, W); None checks nothing."""
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise MescError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
                        f"{shape[1]}x{shape[0]}")
    return mask


class Label:
    """An annotation decoded on demand: ``file`` is what is stat'ed (cache keys, messages),
    ``key`` names it when one file holds many masks (a COCO JSON)."""

    def __init__(self, file, decode: Callable[[], np.ndarray], key: str | None = None,
                 unknown: Callable[[], list] | None = None):
        self.file = Path(file)
        self._decode = decode
        self.key = key
        # the raw ids in the file that the layout's table does not know (decoding maps them to
        # ignore): for `mesc data check` to flag, where the layout has such a table
        self.unknown = unknown

    @property
    def name(self) -> str:
        return self.file.name if self.key is None else f"{self.file.name}#{self.key}"

    def stat(self):
        return self.file.stat()

    def read(self, shape=None) -> np.ndarray:
        return check_mask_shape(np.asarray(self._decode(), dtype=np.uint8), shape, self)

    def __str__(self) -> str:
        return str(self.file) if self.key is None else f"{self.file}#{self.key}"

    def __repr__(self) -> str:
        return f"Label({str(self)!r})"
