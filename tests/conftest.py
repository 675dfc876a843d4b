import os

import pytest

# Keep the 2-core CI machine responsive when several torch/ORT tests run.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _has_tensorrt():
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_trt = pytest.mark.skip(reason="TensorRT is not installed (needs an NVIDIA GPU and 'pip install mesc[trt]')")
    for item in items:
        # the marker, not the keyword: tests/runtime/backends/trt/ puts "trt" in every keyword set there
        if item.get_closest_marker("trt") and not _has_tensorrt():
            item.add_marker(skip_trt)
