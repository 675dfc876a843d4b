"""Calibration images: a folder of PNG/JPEG turned into the package's normalised input batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.errors import MescError


def _list_images(folder) -> list[Path]:
    try:  # the shared data-folder reader (mesc layout, Cityscapes, plain folder) when present
        from mesc.data import read_folder
    except ImportError:
        root = Path(folder)
        if not root.is_dir():
            raise MescError(f"calibration folder {root} does not exist or is not a directory") from None
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        if not paths:
            raise MescError(f"calibration folder {root} holds no PNG/JPEG images")
        return paths
    return [img for img, _ in read_folder(folder)]


def _load(path) -> np.ndarray:
    try:
        from mesc.data import load_image
    except ImportError:
        from PIL import Image

        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError) as err:
            raise MescError(f"cannot read image {path}: {err}") from None
    return load_image(path)


def normalize(rgb: np.ndarray, normalization: dict | None) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 per the manifest's ``input.normalization``."""
    n = normalization or {}
    x = rgb.astype(np.float32) / float(n.get("scale", 255.0))
    mean = np.asarray(n.get("mean", [0.0, 0.0, 0.0]), np.float32)
    std = np.asarray(n.get("std", [1.0, 1.0, 1.0]), np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def load_calibration_batches(folder, input_spec: dict, max_images: int | None = None):
    """The images of ``folder`` as input batches for the package (list of NxCxHxW float32).

    Images must already have the package's H x W: resizing would calibrate on a different
    distribution than the one the engine sees. A fixed batch size N groups the images by N,
    the last group filled up by repeating its last image. Returns ``(batches, paths)``.
    """
    shape = input_spec["shape"]
    h, w = int(shape[2]), int(shape[3])
    n = shape[0] if isinstance(shape[0], int) else 1
    paths = _list_images(folder)
    if max_images:
        paths = paths[:max_images]
    arrays = []
    for p in paths:
        rgb = _load(p)
        if rgb.shape[:2] != (h, w):
            raise MescError(f"calibration image {p} is {rgb.shape[1]}x{rgb.shape[0]} (WxH); the package "
                            f"expects {w}x{h}: resize or crop the calibration images to the export size")
        arrays.append(normalize(rgb, input_spec.get("normalization")))
    batches = []
    for i in range(0, len(arrays), n):
        group = arrays[i:i + n]
        group += [group[-1]] * (n - len(group))
        batches.append(np.stack(group))
    return batches, paths
