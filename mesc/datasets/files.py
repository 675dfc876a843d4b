"""Finding image files, split lists and class names in a folder tree (numpy/PIL-free: shared by
every layout reader)."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def images_in(folder: Path, suffix: str = "") -> list[Path]:
    """Image files under ``folder`` whose names end in ``suffix``, sorted."""
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_list(path: Path) -> list[str]:
    """The image names of a split list (one per line; VOC and SBD keep only the first column)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_classes(path) -> list[str] | None:
    """Class names from ``classes.txt`` in a data folder, or None."""
    f = Path(path) / "classes.txt"
    return [line.strip() for line in f.read_text().splitlines() if line.strip()] if f.is_file() else None

