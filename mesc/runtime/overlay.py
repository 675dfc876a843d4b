"""Overlays a person can judge: the image with its class colours blended over it and a small
legend in the top-left corner (the classes present, which exit answered and how fast).

Colours and names come from the package (``mesc export --class-names``: its ``classes``
field), so every tool shows the same ones; a package without names shows class numbers in
the default palette (:func:`mesc.runtime.images.palette`).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from mesc.runtime.images import palette

ALPHA = 0.5  # weight of the class colour over the image
LEGEND_BG = (0, 0, 0)  # the legend's box
LEGEND_FG = (255, 255, 255)
LEGEND_MARGIN = 4  # pixels between the legend box and the image's corner
SWATCH = 8  # side of a class's colour square in the legend
LINE = 11  # pixels per legend line (PIL's built-in bitmap font is 11 px high)
MAX_LEGEND_CLASSES = 8  # the legend lists the most frequent classes, at most this many


def class_table(pkg) -> Tuple[List[str], List[Tuple[int, int, int]]]:
    """(names, RGB colours) of the package's classes: as stored at export, else numbers and
    the default palette."""
    stored = getattr(pkg.view, "classes", None)
    if stored:
        return [c.name for c in stored], [tuple(c.color) for c in stored]
    n = max(ex.num_classes for ex in pkg.exits)
    flat = palette(n)
    return [str(i) for i in range(n)], [tuple(flat[3 * i:3 * i + 3]) for i in range(n)]


def blend(image: np.ndarray, labels: np.ndarray, colours: Sequence, alpha: float = ALPHA) -> np.ndarray:
    """``image`` (H x W x C uint8; grey is shown as RGB) with each pixel's class colour blended
    over it; class ids beyond ``colours`` are left unpainted."""
    img = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    lut = np.zeros((max(len(colours), 1) + 1, 3), np.float32)
    lut[:len(colours)] = np.asarray(colours, np.float32).reshape(-1, 3)
    ids = np.clip(labels.astype(np.int64), 0, len(colours))  # out of range -> the last (unused) row
    painted = ids < len(colours)
    out = img.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * lut[ids[painted]]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def legend_lines(labels: np.ndarray, names: Sequence[str], exit_name: str,
                 latency_ms: Optional[float]) -> Tuple[List[Tuple[int, str]], str]:
    """The legend's class lines ``(class id, text)``, most frequent first, and its header."""
    counts = np.bincount(labels.reshape(-1).astype(np.int64).clip(0), minlength=len(names))
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0][:MAX_LEGEND_CLASSES]
    rows = [(c, names[c] if c < len(names) else str(c)) for c in order]
    header = exit_name if latency_ms is None else f"{exit_name} {latency_ms:.1f} ms"
    return rows, header


def draw_legend(image: np.ndarray, labels: np.ndarray, names: Sequence[str], colours: Sequence,
                exit_name: str, latency_ms: Optional[float]) -> np.ndarray:
    """A copy of ``image`` (H x W x 3) with the legend drawn in its top-left corner: a black box
    with the header line, then one colour square and name per class present. Text that does not
    fit a small image is cut at its edge."""
    from PIL import Image, ImageDraw

    rows, header = legend_lines(labels, names, exit_name, latency_ms)
    im = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(im)
    width = max([draw.textlength(header)] + [SWATCH + 3 + draw.textlength(t) for _, t in rows])
    x0 = y0 = LEGEND_MARGIN
    box = (x0, y0, x0 + int(width) + 6, y0 + LINE * (1 + len(rows)) + 4)
    draw.rectangle(box, fill=LEGEND_BG)
    draw.text((x0 + 3, y0 + 1), header, fill=LEGEND_FG)
    for k, (c, text) in enumerate(rows, 1):
        y = y0 + 2 + LINE * k
        colour = tuple(colours[c]) if c < len(colours) else LEGEND_FG
        draw.rectangle((x0 + 3, y + 1, x0 + 3 + SWATCH - 1, y + SWATCH), fill=colour)
        draw.text((x0 + 3 + SWATCH + 3, y), text, fill=LEGEND_FG)
    return np.asarray(im)


def swatch_box(row: int) -> Tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of the colour square of the legend's ``row``-th class
    (0-based): where a test or a reader finds the class colour."""
    x0 = LEGEND_MARGIN + 3
    y = LEGEND_MARGIN + 2 + LINE * (row + 1)
    return x0, y + 1, x0 + SWATCH - 1, y + SWATCH


def overlay(image: np.ndarray, labels: np.ndarray, names: Sequence[str], colours: Sequence, exit_name: str,
            latency_ms: Optional[float] = None, alpha: float = ALPHA) -> np.ndarray:
    """The blended image with its legend (H x W x 3 uint8)."""
    return draw_legend(blend(image, labels, colours, alpha), labels, names, colours, exit_name, latency_ms)


def write_overlay_png(path, image: np.ndarray, labels: np.ndarray, names, colours, exit_name: str,
                      latency_ms: Optional[float] = None) -> None:
    from PIL import Image

    Image.fromarray(overlay(image, labels, names, colours, exit_name, latency_ms)).save(path, format="PNG")


__all__ = ["blend", "class_table", "draw_legend", "legend_lines", "overlay", "swatch_box", "write_overlay_png"]
