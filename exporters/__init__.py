"""Model splitting and ONNX export (mesc export). Imports torch lazily."""
