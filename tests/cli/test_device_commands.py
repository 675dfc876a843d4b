"""What a user runs on the device, in the order they run it, on a package exported elsewhere:
``inspect``, ``data check``, ``prepare``, ``selftest``, ``bench --record``, ``calibrate --write``,
``eval``, ``run`` and ``build`` (which, without TensorRT, names the extra). The Python 3.8 stage
of `make test` runs this on 3.8 at the oldest declared versions, without torch (the main venv
exports the package), which is a Jetson on JetPack 5."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from exported import export_toy
from toy_data import SHAPE

from mesc.cli import cli


@pytest.fixture(scope="module")
def device_pkg(tmp_path_factory):
    # six classes, as the synthetic scenes have
    return export_toy("skipnet", tmp_path_factory.mktemp("device") / "pkg", 6, strides=[2, 2, 2], dynamic_batch=True,
                      policy="top1", verify=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("scenes") / "data", 12, seed=3, size=tuple(SHAPE[2:]))


def _ok(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, f"mesc {' '.join(map(str, args))}:\n{res.output}"
    return res.output


def test_the_device_commands_in_the_order_a_user_runs_them(device_pkg, scenes, tmp_path):
    pkg = shutil.copytree(device_pkg, tmp_path / "pkg")
    assert "exit0" in _ok("inspect", pkg)
    assert json.loads(_ok("data", "check", scenes, "--json"))
    _ok("prepare", pkg, "--precision", "fp16")
    _ok("selftest", pkg, "--backend", "onnxruntime", "--device", "cpu", "--precision", "fp16", "--images", "2",
        "--runs", "1")
    _ok("bench", pkg, "--warmup", "0", "--iters", "2", "--baseline", "none", "--record")
    manifest = json.loads((pkg / "mesc.json").read_text())
    assert manifest["latency"], "bench --record wrote no latency"
    _ok("calibrate", pkg, "--data", scenes, "--max-drop", "100", "--write")
    _ok("eval", pkg, "--data", scenes, "--json", tmp_path / "eval.json")
    assert "segmented" in _ok("run", pkg, scenes / "images", "-o", tmp_path / "out")
    res = CliRunner().invoke(cli, ["build", str(pkg), "--target", "xavier"])
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert res.exit_code == 2 and "pip install 'mesc[trt]'" in res.output, res.output
