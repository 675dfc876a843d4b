"""ONNX Runtime backend: :class:`SessionsFromPackage` loads, :class:`OrtRunner` runs."""

from __future__ import annotations

from mesc.runtime.backends.onnxrt.loader import Sessions, SessionsFromPackage, session_options
from mesc.runtime.backends.onnxrt.runner import OrtRunner

__all__ = ["OrtRunner", "Sessions", "SessionsFromPackage", "session_options"]
