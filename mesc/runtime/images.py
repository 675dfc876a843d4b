"""Images in and label maps out: reading, checking and normalising inputs; palette PNGs.

Pillow is a core dependency; nothing here needs torch.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
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


# Refused outright, before decoding: about 9459 x 9459 (Pillow's own warning threshold), which
# is 256 MiB as RGB. Above it Pillow only warns (up to twice as many pixels), and a header can
# claim any size, so the limit is ours and a file over it is skipped like any unreadable one.
MAX_PIXELS = 89_478_485

# Single-channel integer modes read as 16-bit values 0..65535 (Pillow names them by byte order;
# "I" is how older Pillow versions and some formats hand over 16-bit grey).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _source(path):
    return path if hasattr(path, "read") else Path(path)


@contextmanager
def opened_image(path, what: str = "image"):
    """The decoded Pillow image of ``path``. Every reader failure (missing file, not an image,
    truncated data, more pixels than :data:`MAX_PIXELS`, a conversion Pillow cannot do inside
    the ``with``) becomes an :class:`InputError` naming the file, so a caller skips that one.
    ``path`` may also be an open binary file (encoded bytes received by a server): its ``str``
    names it in the messages."""
    from PIL import Image, UnidentifiedImageError

    path = _source(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns below its hard limit; our own limit below decides either way
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise InputError(f"{path}: the {what} is {im.width}x{im.height} (WxH) pixels, more than "
                                     f"mesc reads ({MAX_PIXELS} pixels): skipped as a possible decompression bomb")
                im.load()
                yield im
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(f"{path}: skipped as a possible decompression bomb ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise InputError(f"{path}: cannot read the {what} ({err})") from err


def _sixteen_to_8bit(im, path):
    """16-bit grey as 8-bit "L": v * 255 / 65535, rounded. Pillow's own conversion clips at 255,
    which turns every value above 255 white."""
    from PIL import Image

    v = np.asarray(im).astype(np.int64)
    if v.size and (v.min() < 0 or v.max() > 65535):
        raise InputError(f"{path}: {im.mode} image holds values {v.min()}..{v.max()}, outside the 16-bit "
                         f"range 0..65535 that mesc scales to 8 bits")
    return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), "L")


def read_image(path, size: tuple[int, int] | None = None, channels: int = 3,
               resize: bool = False) -> np.ndarray:
    """Read an image file as H x W x C uint8. ``size`` is (H, W): another size is refused,
    naming the file, unless ``resize`` (bilinear).

    Conversions: 16-bit grey is scaled by 255/65535 with rounding (16-bit RGB files come from
    Pillow already reduced to their high byte, at most one level from that); grey becomes RGB
    by replication; RGBA and LA lose their alpha (dropped, not composited: the colour values are
    taken as stored); palette images go through their palette; for a 1-channel input colour
    becomes luma (ITU-R 601). 32-bit float ("F") images are refused: they have no fixed range
    to map to 0..255.
    """
    from PIL import Image

    path = _source(path)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise InputError(f"{path}: cannot read images for a {channels}-channel input")
    with opened_image(path) as im:
        if im.mode == "F":
            raise InputError(f"{path}: 32-bit float images have no fixed range to map to 8 bits; "
                             f"save it as an 8- or 16-bit image")
        if im.mode in SIXTEEN_BIT_MODES:
            im = _sixteen_to_8bit(im, path)
        im = im.convert(mode)
        if size is not None and (im.height, im.width) != tuple(size):
            if not resize:
                raise InputError(
                    f"{path}: image is {im.width}x{im.height} (WxH) but the package takes "
                    f"{size[1]}x{size[0]}; pass --resize to resize it")
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
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


def write_label_png(path, labels: np.ndarray, num_classes: int, colours=None) -> None:
    """A label map as a palette ("P" mode) PNG; class ids above 255 cannot be stored.
    ``colours``: the package's class colours (RGB per class id), ahead of the default palette."""
    from PIL import Image

    if labels.size and int(labels.max()) > 255:
        raise InputError(f"{path}: label ids above 255 do not fit a palette PNG")
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    im = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    flat = palette(num_classes)
    if colours:
        head = [int(v) for rgb in colours[:256] for v in rgb]
        flat = head + flat[len(head):]
    im.putpalette(flat)
    im.save(path, format="PNG")

