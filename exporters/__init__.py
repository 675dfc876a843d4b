"""Model splitting and ONNX export (mesc export). Imports torch lazily."""

from __future__ import annotations
