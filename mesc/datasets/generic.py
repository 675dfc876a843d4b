"""mesc's own layout (``images/`` + optional ``masks/`` with the same file stems, as
``mesc synth-data`` writes) and a plain folder of images (no masks)."""

from __future__ import annotations

from pathlib import Path

from mesc.datasets.files import images_in


class Folders:
    FORMAT = "images+masks"

    @staticmethod
    def detect(root: Path) -> Path | None:
        return root if (root / "images").is_dir() else None

    @staticmethod
    def splits(root: Path) -> list[str]:
        return []

    @staticmethod
    def read(root: Path, split: str | None):
        masks = {}
        if (root / "masks").is_dir():
            masks = {p.relative_to(root / "masks").with_suffix(""): p for p in images_in(root / "masks")}
        return [(img, masks.get(img.relative_to(root / "images").with_suffix("")))
                for img in images_in(root / "images")]


class Plain:
    FORMAT = "images"

    @staticmethod
    def detect(root: Path) -> Path | None:
        return root

    @staticmethod
    def splits(root: Path) -> list[str]:
        return []

    @staticmethod
    def read(root: Path, split: str | None):
        return [(img, None) for img in images_in(root)]
