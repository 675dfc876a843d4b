"""TensorRT engine building per target (mesc build). Imports tensorrt lazily."""
