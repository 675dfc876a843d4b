import os
import sys
from pathlib import Path

import pytest

# toys.py (the toy nets) is one module every test folder imports
sys.path.insert(0, str(Path(__file__).parent))

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
    from toys import skipnet

    from mesc.exporters.export import ExportOptions, export

    out = tmp_path_factory.mktemp("toy_package") / "toy"
    export(skipnet(), out,
           options=ExportOptions(policy=None, verify=False))
    return out


@pytest.fixture(scope="session")
def policy_package(tmp_path_factory):
    """A toy package (6 classes, in-graph top-1 policy, dynamic batch) calibration and
    ``mesc eval``'s tests share; copy it before writing to it."""
    pytest.importorskip("torch")
    from toys import skipnet

    from mesc.exporters.export import ExportOptions, export

    pkg = export(skipnet(num_classes=6), tmp_path_factory.mktemp("calib") / "pkg",
                 options=ExportOptions(policy="top1", dynamic_batch=True, strides=[2, 2, 2], verify=False))
    return pkg.root
