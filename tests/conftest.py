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


def _tensorrt_version():
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt.__version__


def _no_gpu_reason():
    """Why no CUDA device can run the trt tests here (the CUDA runtime's own failure), or None."""
    from mesc.errors import MescError
    from mesc.runtime import devices

    try:
        if devices.cuda_device_count() > 0:
            return None
        return devices.cuda_failure() or "the CUDA runtime reports no device"
    except MescError as err:
        return str(err)


def pytest_collection_modifyitems(config, items):
    version = _tensorrt_version()
    no_module = "TensorRT is not installed (needs an NVIDIA GPU and 'pip install mesc[trt]')"
    # the marker, not the keyword: tests/runtime/backends/trt/ puts "trt" in every keyword set there
    needs_gpu = [item for item in items if item.get_closest_marker("trt")]
    if version is None:
        for item in needs_gpu:
            item.add_marker(pytest.mark.skip(reason=no_module))
        for item in items:
            if item.get_closest_marker("tensorrt"):
                item.add_marker(pytest.mark.skip(reason="the tensorrt module is not installed here; make test-trt85 "
                                                        "runs these against TensorRT 8.5, no GPU needed"))
        return
    reason = _no_gpu_reason() if needs_gpu else None
    if reason:
        # import tensorrt works without a GPU (PyPI's 8.5 wheel does): these need one
        for item in needs_gpu:
            item.add_marker(pytest.mark.skip(reason=f"TensorRT {version} is installed, but no GPU: {reason}"))


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
