import os
import sys
from pathlib import Path

import pytest

# toys.py (the toy nets) is one module every test folder imports
sys.path.insert(0, str(Path(__file__).parent))

import click_compat  # noqa: E402

# before any test module imports CliRunner: the Python 3.8 stage has click 8.1
click_compat.install()

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


@pytest.fixture(scope="session")
def toy_package(tmp_path_factory):
    """A small exported package (the skip-connection toy net, no in-graph policy); copy it
    before changing it."""
    from exported import export_toy

    return export_toy("skipnet", tmp_path_factory.mktemp("toy_package") / "toy", policy=None, verify=False)


@pytest.fixture(scope="session")
def policy_package(tmp_path_factory):
    """A toy package (6 classes, in-graph top-1 policy, dynamic batch) calibration and
    ``mesc eval``'s tests share; copy it before writing to it."""
    from exported import export_toy

    return export_toy("skipnet", tmp_path_factory.mktemp("calib") / "pkg", 6, policy="top1", dynamic_batch=True,
                      strides=[2, 2, 2], verify=False)
