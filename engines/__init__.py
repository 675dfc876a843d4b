"""TensorRT engine building per target (mesc build). Imports tensorrt lazily."""

from __future__ import annotations
