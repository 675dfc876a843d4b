"""Reading a data set's files: an image as HxWx3 uint8 RGB, a mask as HxW uint8 class ids, and
the two checked against each other. The one reader every layout, training, ``mesc eval``,
calibration and ``mesc data check`` use, so a file fails with the same message everywhere.

numpy and PIL only: images go through the runtime's reader (:mod:`mesc.runtime.images`), which
``mesc run`` uses on the device.
"""

from __future__ import annotations

import numpy as np

from mesc.datasets.labels import Label, check_mask_shape
from mesc.errors import MescError

# Masks are class ids: these modes hold one id per pixel and are read by value, never colour-
# converted (a palette mask's colours are only its display; "1" holds ids 0 and 1).
MASK_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")


def load_image(path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (the runtime's reader: one set of error messages)."""
    from mesc.runtime.images import read_image

    return read_image(path)


def image_size(path) -> tuple[int, int]:
    """An image file's (height, width), read from its header without decoding the pixels."""
    from mesc.runtime.images import opened_image

    with opened_image(path) as im:
        return im.height, im.width


def load_mask(path, shape=None) -> np.ndarray:
    """A label mask as HxW uint8 class ids (255 = ignore); ``shape`` (H, W) must match if given.
    ``path`` may be a :class:`~mesc.datasets.labels.Label` (a mask decoded from another format).

    A palette or grey mask is read by its index values, 16-bit masks by value (ids up to 255),
    never scaled or converted."""
    from mesc.runtime.images import opened_image

    if isinstance(path, Label):
        return path.read(shape)
    with opened_image(path, what="mask") as im:
        if im.mode not in MASK_MODES:
            raise MescError(f"mask {path} has mode {im.mode}; expected single-channel class ids "
                            f"({', '.join(MASK_MODES)})")
        mask = np.asarray(im)
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise MescError(f"mask {path} holds ids {mask.min()}..{mask.max()}; class ids are 0..255")
    return check_mask_shape(mask, shape, path).astype(np.uint8)


def load_pair(image_path, mask_path):
    """``(image, mask or None)`` with the sizes checked against each other."""
    image = load_image(image_path)
    return image, None if mask_path is None else load_mask(mask_path, image.shape[:2])


__all__ = ["MASK_MODES", "image_size", "load_image", "load_mask", "load_pair"]
