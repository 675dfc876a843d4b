"""Calibration images: a folder of PNG/JPEG turned into the package's normalised input batches."""

from __future__ import annotations

import numpy as np

from mesc.datasets import read_folder
from mesc.datasets.images import load_image
from mesc.errors import MescError
from mesc.package.schema import Input
from mesc.runtime.images import normalize


def load_calibration_batches(folder, input_spec: Input, max_images: int | None = None):
    """The images of ``folder`` as input batches for the package (list of NxCxHxW float32).

    Images must already have the package's H x W: resizing would calibrate on a different
    distribution than the one the engine sees. A fixed batch size N groups the images by N,
    the last group filled up by repeating its last image. Returns ``(batches, paths)``.
    """
    from mesc.ranges import check_int

    # checked here too, the one reader prepare and build share: -1 would be a slice dropping the last image
    check_int("--max-images", max_images, 1, optional=True)
    shape = input_spec.shape
    h, w = int(shape[2]), int(shape[3])
    n = shape[0] if isinstance(shape[0], int) else 1
    paths = [img for img, _ in read_folder(folder)]
    if max_images is not None:
        paths = paths[:max_images]
    arrays = []
    for p in paths:
        rgb = load_image(p)
        if rgb.shape[:2] != (h, w):
            raise MescError(f"calibration image {p} is {rgb.shape[1]}x{rgb.shape[0]} (WxH); the package "
                            f"expects {w}x{h}: resize or crop the calibration images to the export size")
        arrays.append(normalize(rgb, input_spec.normalization))
    batches = []
    for i in range(0, len(arrays), n):
        group = arrays[i:i + n]
        group += [group[-1]] * (n - len(group))
        batches.append(np.stack(group))
    return batches, paths
