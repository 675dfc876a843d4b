"""Images in and label maps out: reading, checking and normalising inputs; palette PNGs.

Pillow is a core dependency; nothing here needs torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesc.runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")

# Cityscapes' 19 train-id colours: the reference models are trained on it.
CITYSCAPES = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]


def palette(num_classes: int) -> list[int]:
    """A flat 768-entry RGB palette: Cityscapes colours first, then well-spread PASCAL-style
    bit-interleaved colours for any further class."""
    colours = list(CITYSCAPES[:num_classes])
    for c in range(len(colours), 256):
        r = g = b = 0
        v = c
        for shift in range(7, -1, -1):
            r |= ((v >> 0) & 1) << shift
            g |= ((v >> 1) & 1) << shift
            b |= ((v >> 2) & 1) << shift
            v >>= 3
        colours.append((r, g, b))
    return [ch for rgb in colours[:256] for ch in rgb]


def collect_images(paths) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted); order kept, duplicates
    dropped. A path that does not exist is kept, so that reading it reports it per item."""
    out, seen = [], set()
    for p in map(Path, paths):
        items = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES) \
            if p.is_dir() else [p]
        for q in items:
            if q not in seen:
                seen.add(q)
                out.append(q)
    return out


def read_image(path, size: tuple[int, int] | None = None, channels: int = 3,
               resize: bool = False) -> np.ndarray:
    """Read an image file as H x W x C uint8. ``size`` is (H, W): another size is refused,
    naming the file, unless ``resize`` (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
            if mode is None:
                raise InputError(f"{path}: cannot read images for a {channels}-channel input")
            im = im.convert(mode)
            if size is not None and (im.height, im.width) != tuple(size):
                if not resize:
                    raise InputError(
                        f"{path}: image is {im.width}x{im.height} (WxH) but the package takes "
                        f"{size[1]}x{size[0]}; pass --resize to resize it")
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot read the image ({err})") from err
    if arr.size == 0:
        raise InputError(f"{path}: the image is empty")
    return arr[..., None] if arr.ndim == 2 else arr


def normalize(image: np.ndarray, normalization: dict | None) -> np.ndarray:
    """H x W x C uint8 -> C x H x W float32 as ``(x / scale - mean) / std`` per channel."""
    norm = normalization or {}
    x = image.astype(np.float32) / np.float32(norm.get("scale", 255.0))
    c = image.shape[-1]
    mean = np.asarray(norm.get("mean", [0.0] * c), np.float32)
    std = np.asarray(norm.get("std", [1.0] * c), np.float32)
    if mean.size not in (1, c) or std.size not in (1, c):
        raise InputError(f"the package normalisation has {mean.size} means / {std.size} stds "
                         f"for a {c}-channel image")
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def write_label_png(path, labels: np.ndarray, num_classes: int) -> None:
    """A label map as a palette ("P" mode) PNG; class ids above 255 cannot be stored."""
    from PIL import Image

    if labels.size and int(labels.max()) > 255:
        raise InputError(f"{path}: label ids above 255 do not fit a palette PNG")
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    im = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    im.putpalette(palette(num_classes))
    im.save(path, format="PNG")

