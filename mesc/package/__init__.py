"""The mesc package format: a directory holding the manifest (``mesc.json``), per-segment ONNX
and engines, and everything that reads or writes one.

:mod:`~mesc.package.package` loads and updates a package (:class:`Package`),
:mod:`~mesc.package.schema` is the typed read-only view of its manifest,
:mod:`~mesc.package.manifest` validates the manifest, :mod:`~mesc.package.merge` merges
concurrent writes, :mod:`~mesc.package.locking`, :mod:`~mesc.package.paths`,
:mod:`~mesc.package.staging`, :mod:`~mesc.package.outputs` and :mod:`~mesc.package.signals`
keep writes locked, confined, atomic and interruptible, and :mod:`~mesc.package.describe` is
``mesc inspect``'s description. Free of numpy, torch and onnx: the runtime imports it.
"""

from __future__ import annotations

from mesc.errors import PackageError
from mesc.package.manifest import MANIFEST
from mesc.package.package import Package, sha256_file

__all__ = ["MANIFEST", "Package", "PackageError", "sha256_file"]
