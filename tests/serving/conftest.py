"""A toy package (three exits, in-graph policy, dynamic batch) and uint8 images that spread over
its exits, for the served model's checks without a server; the demo package, exported with
dynamic and with static batch, for the live servers (test_served.py, test_tritonserver.py).

nvidia-pytriton pins numpy<2, so `make test` runs the live tests in their own .venv-serve, with the
demo package exported by the main venv's Python (MESC_EXPORT_PYTHON, torch is not in .venv-serve)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _export_python():
    py = os.environ.get("MESC_EXPORT_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not Path(py).exists():
        pytest.skip(f"no Python with torch to export the demo package ({py}); make test sets MESC_EXPORT_PYTHON")
    return py


def _export_demo(out, *flags):
    subprocess.run([_export_python(), "-m", "mesc.cli", "export", "-o", str(out), "--policy-at", "native", *flags],
                   check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def demo_dynamic(tmp_path_factory):
    """The demo model exported with --dynamic-batch, as folder ``demo``."""
    return _export_demo(tmp_path_factory.mktemp("serve") / "demo", "--dynamic-batch")


@pytest.fixture(scope="session")
def demo_static(tmp_path_factory):
    """The demo model exported with its static batch, as folder ``demo-static``."""
    return _export_demo(tmp_path_factory.mktemp("serve") / "demo-static")


@pytest.fixture(scope="session")
def served_pkg(tmp_path_factory):
    from exported import export_toy
    from toy_data import SHAPE

    return export_toy("three_exits", tmp_path_factory.mktemp("served") / "toy", input_shape=SHAPE,
                      strides=[2, 4, 4], dynamic_batch=True, policy="top1", verify=False)


@pytest.fixture(scope="session")
def uint8_images():
    from toy_data import SHAPE

    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (6, SHAPE[2], SHAPE[3], SHAPE[1]), dtype=np.uint8)
