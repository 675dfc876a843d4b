"""TensorRT installed, no GPU (the TensorRT 8.5 stage: PyPI's 8.5.3.1 imports without one).

``mesc build`` and ``mesc selftest --backend tensorrt`` stop with one line naming the CUDA
failure, no traceback, and leave the package as it was. Marked tensorrt; skipped where a GPU
answers (there the trt tests build for real).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from exported import export_toy

pytestmark = pytest.mark.tensorrt


def _gpu_answers() -> bool:
    from mesc.runtime import devices

    return devices.visible_cuda_devices() > 0


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    if _gpu_answers():
        pytest.skip("a CUDA device answers here: the trt tests build engines for real")
    return export_toy("skipnet", tmp_path_factory.mktemp("nogpu") / "pkg", policy="top1", verify=False)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mesc(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "mesc.cli", *args], capture_output=True, text=True, cwd=str(cwd),
                          env=env, timeout=600)


def _assert_one_line_cuda_failure(res):
    """Exit status 2, no traceback, and the last line (progress may come before it) is the one
    error, naming the CUDA runtime's own error code (35 where there is no driver)."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mesc: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "CUDA error" in errors[0], errors[0]


@pytest.mark.parametrize("target", ["xavier", "host"])
def test_build_names_the_cuda_failure_and_writes_nothing(pkg, tmp_path, target):
    copy = Path(shutil.copytree(pkg, tmp_path / "pkg"))
    before = _snapshot(copy)
    _assert_one_line_cuda_failure(_mesc("build", str(copy), "--target", target, cwd=tmp_path))
    assert _snapshot(copy) == before, "the failed build changed the package"


@pytest.mark.parametrize("device", [[], ["--device", "cuda:0"]])
def test_selftest_on_tensorrt_names_the_cuda_failure_and_writes_nothing(pkg, tmp_path, device):
    copy = Path(shutil.copytree(pkg, tmp_path / "pkg"))
    before = _snapshot(copy)
    res = _mesc("selftest", str(copy), "--backend", "tensorrt", "--target", "xavier", *device, cwd=tmp_path)
    _assert_one_line_cuda_failure(res)
    assert _snapshot(copy) == before, "the failed selftest changed the package"
