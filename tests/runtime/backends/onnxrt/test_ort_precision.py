"""The prepared precisions on ONNX Runtime CPU: ``mesc.load(..., precision=)`` and ``mesc run
--precision`` run the FP16/INT8 graphs ``mesc prepare`` wrote, with labels close to FP32."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mesc
from mesc.cli import cli
from mesc.runtime import BackendError
from mesc.runtime.backends.onnxrt import SessionsFromPackage
from mesc.runtime.devices import Device

from toy_data import calibration_images

# measured on the toy, on images like the calibration set: fp16 1.0, int8 0.990-0.996 of the labels
# agree with FP32
MIN_AGREEMENT = {"fp16": 0.995, "int8": 0.97}


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return calibration_images(tmp_path_factory.mktemp("ort-precision-calib"), 8, seed=4)


@pytest.fixture(scope="module")
def prepared(pkg_graph, calib, tmp_path_factory):
    from mesc.calibration.precision import prepare

    root = tmp_path_factory.mktemp("ort-precision") / "pkg"
    shutil.copytree(pkg_graph, root)
    prepare(root, ("fp16", "int8"), calib_data=calib)
    return root


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_load_runs_the_prepared_graphs(prepared, calib, precision):
    # INT8 scales hold for images like the calibration set, not for far brighter ones
    images = [np.asarray(Image.open(p)) for p in sorted(calib.iterdir())]
    pkg = mesc.load(prepared).pkg
    graphs = SessionsFromPackage(pkg, Device("cpu"), precision=precision).graphs
    assert all(f"onnx_{precision}/" in path for path in graphs.values())
    with mesc.load(prepared, backend="onnxruntime") as fp32, \
            mesc.load(prepared, backend="onnxruntime", precision=precision) as low:
        for k in range(len(pkg.exits)):
            agreement = np.mean([(fp32(x, exit=k).labels == low(x, exit=k).labels).mean() for x in images])
            assert agreement >= MIN_AGREEMENT[precision], (k, agreement)


@pytest.mark.parametrize("precision, hint", [("fp16", "--precision fp16' first"),
                                             ("int8", "--precision int8 --calib-data IMAGES' first")])
def test_an_unprepared_precision_names_the_command(pkg_graph, precision, hint):
    with pytest.raises(BackendError, match=f"no prepared {precision} graphs; run 'mesc prepare .*{hint}"):
        mesc.load(pkg_graph, backend="onnxruntime", precision=precision)
    with pytest.raises(BackendError, match="expected one of fp32, fp16, int8"):
        mesc.load(pkg_graph, backend="onnxruntime", precision="fp8")


def test_run_cli_with_precision(prepared, calib, tmp_path):
    res = CliRunner().invoke(cli, ["run", str(prepared), str(calib), "-o", str(tmp_path / "out"),
                                   "--backend", "onnxruntime", "--precision", "int8"])
    assert res.exit_code == 0, res.output
    assert "8 image(s) segmented" in res.output
