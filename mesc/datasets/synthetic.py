"""Synthetic warehouse scenes for training and testing multi-exit segmenters (``mesc
synth-data``), written as a folder in mesc's own layout (``images/``, ``masks/``,
``classes.txt``) plus ``meta.json`` with each image's difficulty.

numpy and PIL only (no torch): ``mesc selftest`` renders its scenes here on the device. The
folders are read back like any other data set, through :mod:`mesc.datasets` and
:mod:`mesc.datasets.images`.

Each scene has a per-image difficulty d in [0, 1]. Easy scenes hold a few large objects in
saturated, well separated class colours; hard ones hold many small, overlapping objects whose
colours drift toward a common grey and toward each other's, under clutter that borrows other
classes' colours, low contrast, blur and noise. Colour alone solves an easy scene (a shallow
exit can); a hard one needs shape and context (depth).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mesc.datasets.labels import IGNORE
from mesc.errors import MescError
from mesc.package.outputs import SYNTH_DATA_GENERATOR, check_dir_output

CLASSES = ("floor", "person", "box", "robot", "lane", "clutter")
# Saturated, far-apart colours: what an easy scene shows. Hard scenes blend toward GREY.
PALETTE = np.array([
    (120, 120, 120),  # floor
    (210, 50, 60),    # person
    (205, 140, 40),   # box
    (40, 90, 215),    # robot
    (235, 225, 50),   # lane
    (60, 175, 70),    # clutter
], dtype=np.float32)
GREY = np.array((128, 128, 128), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# generator

def _class_colour(rng, cls: int, d: float) -> np.ndarray:
    """A class colour that is crisp when easy and confusable (greyed, jittered) when hard."""
    if cls == 5 and rng.random() < 0.6 * d:
        # clutter that wears another class's colour: only its shape gives it away
        base = PALETTE[rng.integers(1, 5)]
    else:
        base = PALETTE[cls]
    colour = base + (GREY - base) * (0.7 * d) + rng.normal(0, 5 + 45 * d, 3)
    return np.clip(colour, 0, 255)


def _stamp(label, image, shape_mask, cls, colour, rng, d):
    """Paint one object: the later object occludes the earlier (painter's order)."""
    m = np.asarray(shape_mask, dtype=bool)
    label[m] = cls
    # a per-object texture: flat when easy, blotchy when hard
    tex = rng.normal(0, 3 + 25 * d, size=(1 + m.shape[0] // 8, 1 + m.shape[1] // 8, 1))
    tex = np.kron(tex, np.ones((8, 8, 1)))[: m.shape[0], : m.shape[1]]
    image[m] = (colour + tex)[m]


def _canvas(h, w):
    return Image.new("L", (w, h), 0)


def _rotated_rect(cx, cy, rw, rh, angle):
    c, s = math.cos(angle), math.sin(angle)
    pts = [(-rw, -rh), (rw, -rh), (rw, rh), (-rw, rh)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _person(rng, h, w, scale):
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    bw, bh = 0.16 * scale * h, 0.32 * scale * h
    img = _canvas(h, w)
    dr = ImageDraw.Draw(img)
    dr.ellipse([cx - bw, cy - bh, cx + bw, cy + bh], fill=1)
    r = 0.6 * bw
    dr.ellipse([cx - r, cy - bh - 1.8 * r, cx + r, cy - bh + 0.2 * r], fill=1)
    return [img]


def _box(rng, h, w, scale):
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rw, rh = (rng.uniform(0.15, 0.3) * scale * h for _ in range(2))
    img = _canvas(h, w)
    ImageDraw.Draw(img).polygon(_rotated_rect(cx, cy, rw, rh, rng.uniform(-0.35, 0.35)), fill=1)
    return [img]


def _robot(rng, h, w, scale):
    """Rounded body plus two dark wheels: returns (body, wheels) so wheels get their own tone."""
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rw, rh = 0.32 * scale * h, 0.2 * scale * h
    body, wheels = _canvas(h, w), _canvas(h, w)
    ImageDraw.Draw(body).rounded_rectangle([cx - rw, cy - rh, cx + rw, cy + rh], radius=0.6 * rh, fill=1)
    r = 0.45 * rh
    dr = ImageDraw.Draw(wheels)
    for x in (cx - 0.6 * rw, cx + 0.6 * rw):
        dr.ellipse([x - r, cy + rh - r, x + r, cy + rh + r], fill=1)
    return [body, wheels]


def _lane(rng, h, w, scale):
    img = _canvas(h, w)
    x0, x1 = rng.uniform(-0.2 * w, 1.2 * w, 2)
    width = max(2, int(rng.uniform(0.03, 0.07) * h * (0.5 + 0.5 * scale)))
    ImageDraw.Draw(img).line([(x0, 0), (x1, h)] if rng.random() < 0.7 else [(0, x0 * h / w), (w, x1 * h / w)],
                             fill=1, width=width)
    return [img]


def _clutter(rng, h, w, scale):
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = rng.uniform(0.05, 0.22, n) * scale * h
    img = _canvas(h, w)
    ImageDraw.Draw(img).polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(ang, rad)], fill=1)
    return [img]


_SHAPES = {1: _person, 2: _box, 3: _robot, 4: _lane, 5: _clutter}


def render_scene(rng: np.random.Generator, size=(128, 256), d: float = 0.5):
    """One scene at difficulty ``d``: ``(image HxWx3 uint8, mask HxW uint8)``."""
    h, w = size
    label = np.zeros((h, w), np.uint8)
    # floor: a tile grid plus low-frequency shading, stronger when hard
    yy, xx = np.mgrid[0:h, 0:w]
    tile = max(8, h // 6)
    floor = _class_colour(rng, 0, 0.3 * d)
    image = np.empty((h, w, 3), np.float32)
    image[:] = floor
    image += (((yy // tile + xx // tile) % 2) * (6 + 14 * d))[..., None]
    image += rng.normal(0, 4 + 12 * d) * np.sin(xx / w * rng.uniform(1, 6) + rng.uniform(0, 6))[..., None]

    # easy: 2-4 big objects; hard: up to ~14 small ones that overlap (occlusion)
    count = int(rng.integers(2, 5) + round(10 * d * rng.uniform(0.6, 1.0)))
    scale = (1.0 - 0.6 * d) * rng.uniform(0.8, 1.2)
    n_lanes = int(rng.integers(0, 3))
    classes = [4] * n_lanes + list(rng.choice([1, 2, 3, 5], size=count, p=[0.3, 0.3, 0.25, 0.15]))
    classes += [5] * int(round(6 * d * rng.random()))  # extra clutter when hard
    # lanes lie on the floor: paint them first so everything else occludes them
    for cls in classes:
        colour = _class_colour(rng, cls, d)
        parts = _SHAPES[cls](rng, h, w, scale)
        _stamp(label, image, parts[0], cls, colour, rng, d)
        for part in parts[1:]:  # robot wheels: same class, darker
            _stamp(label, image, part, cls, colour * 0.35, rng, d)

    # global photometric degradation: lower contrast, blur, sensor noise
    contrast = 1.0 - 0.6 * d * rng.uniform(0.7, 1.0)
    image = (image - image.mean()) * contrast + image.mean() + rng.uniform(-30, 30) * d
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    blur = 1.6 * d * rng.random()
    if blur > 0.3:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    image = np.asarray(out, np.float32) + rng.normal(0, 2 + 18 * d, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """``"128x256"`` -> ``(128, 256)`` (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise MescError(f"{option}: expected HxW (e.g. 128x256), got {text!r}") from None
    if h < 16 or w < 16:
        raise MescError(f"{option}: height and width must be at least 16, got {text!r}")
    return h, w


def parse_range(text: str) -> tuple[float, float]:
    """``"0.2:0.8"`` -> ``(0.2, 0.8)``, inside [0, 1]."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise MescError(f"--difficulty: expected LO:HI in [0, 1] (e.g. 0:1), got {text!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise MescError(f"--difficulty: need 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


# meta.json's "generator": how --force knows a folder is synth data mesc wrote (output safety
# owns the marker, as it owns mesc run's)
GENERATOR = SYNTH_DATA_GENERATOR


def generate(out_dir, count: int, seed: int = 0, size=(128, 256), difficulty=(0.0, 1.0),
             force: bool = False, progress: bool = False) -> Path:
    """Write ``count`` scenes into ``out_dir`` atomically; returns the directory.

    Image ``i`` depends only on ``(seed, i)``, so a larger ``count`` extends a smaller set.
    """
    from mesc.progress import bar as progress_bar
    from mesc.package.staging import staging_dir

    from mesc.ranges import check_int

    check_int("--count", count, 1)
    check_int("--seed", seed, 0, 2**32 - 1)
    check_dir_output(out_dir, "synth-data", force)
    lo, hi = difficulty
    meta = {"generator": GENERATOR, "seed": seed, "size": list(size),
            "difficulty": [lo, hi], "classes": list(CLASSES), "images": []}
    with staging_dir(out_dir, force=force) as tmp, progress_bar(count, "synth-data", "img", progress) as bar:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            d = float(rng.uniform(lo, hi))
            image, mask = render_scene(rng, size, d)
            name = f"{i:05d}.png"
            Image.fromarray(image).save(tmp / "images" / name)
            Image.fromarray(mask).save(tmp / "masks" / name)
            meta["images"].append({"file": name, "difficulty": round(d, 6)})
            bar.update(1)
        (tmp / "classes.txt").write_text("\n".join(CLASSES) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return Path(out_dir)


def read_meta(path) -> dict:
    """The generator's ``meta.json`` for a synthetic folder ({} for other folders)."""
    meta = Path(path) / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


__all__ = ["CLASSES", "GENERATOR", "IGNORE", "generate", "render_scene", "read_meta", "parse_size", "parse_range"]


def video_frames(count: int, size=(128, 256), seed: int = 0, scene_frames: int = 30, difficulty=(0.0, 1.0)):
    """``count`` frames (H x W x 3 uint8) of a synthetic warehouse video: a new scene every
    ``scene_frames`` frames, at a difficulty drawn from ``difficulty``, panning two pixels a
    frame, so that consecutive frames are alike (as a codec expects) and the exits taken vary
    from scene to scene. Tests and benchmarks encode it with :func:`mesc.runtime.video.write_video`."""
    rng = np.random.default_rng(seed)
    lo, hi = difficulty
    image = None
    for k in range(count):
        if k % scene_frames == 0:
            image, _ = render_scene(rng, size, float(rng.uniform(lo, hi)))
        yield np.roll(image, 2 * (k % scene_frames), axis=1)
