"""`mesc run` end to end on PNG files, and the bad-input messages."""

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mesc.cli import cli


@pytest.fixture()
def pngs(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    (d / "broken.png").write_bytes(b"not a png at all")
    return d


def _run(*args):
    res = CliRunner().invoke(cli, ["run", *map(str, args)])
    return res.exit_code, res.output


def test_run_writes_palette_pngs_and_tables(pkg_host, pngs, tmp_path):
    out = tmp_path / "out"
    code, text = _run(pkg_host, pngs, "-o", out, "--th-img", "0.9,0.5,0", "--th-pix", "0.5")
    assert code == 1, text  # one file was skipped
    assert "broken.png: cannot read the image" in text
    assert "3 image(s) segmented, 1 skipped" in text and "mean latency" in text
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png", "img2.png", "results.csv",
                                                       "results.json"]
    im = Image.open(out / "img0.png")
    assert im.mode == "P" and im.size == (64, 32) and im.getpalette()[:3] == [128, 64, 128]
    data = json.loads((out / "results.json").read_text())
    assert [r["output"] for r in data["images"]] == ["img0.png", "img1.png", "img2.png"]
    assert data["failed"][0]["file"].endswith("broken.png")
    assert data["thresholds"]["exit1"] == {"th_pix": 0.5, "th_img": 0.5}
    assert sum(data["summary"]["exits"].values()) == 3
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 3 and {"exit", "latency_ms", "confidence_exit0"} <= set(rows[0])
    assert all(r["exit"] in ("exit0", "exit1", "exit2") for r in rows)


def test_run_budgeted_and_refuses_a_non_empty_output(pkg_host, pngs, tmp_path):
    (pngs / "broken.png").unlink()
    out = tmp_path / "out"
    code, text = _run(pkg_host, pngs / "img0.png", pngs / "img1.png", "-o", out, "--exit", "1", "--batch", "2")
    assert code == 0, text
    assert json.loads((out / "results.json").read_text())["summary"]["exits"] == {"exit0": 0, "exit1": 2, "exit2": 0}
    code, text = _run(pkg_host, pngs, "-o", out)
    assert code == 2 and "not empty; pass --force" in text
    code, text = _run(pkg_host, pngs, "-o", out, "--force")
    assert code == 0, text


def test_wrong_size_is_refused_unless_resize(pkg_host, tmp_path):
    d = tmp_path / "big"
    d.mkdir()
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(d / "big.jpg")
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(d / "grey.png")  # converted to RGB
    code, text = _run(pkg_host, d, "-o", tmp_path / "o1")
    assert code == 1 and "big.jpg: image is 80x40 (WxH) but the package takes 64x32; pass --resize" in text
    assert (tmp_path / "o1" / "grey.png").exists() and not (tmp_path / "o1" / "big.png").exists()
    code, text = _run(pkg_host, d, "-o", tmp_path / "o2", "--resize")
    assert code == 0, text
    assert (tmp_path / "o2" / "big.png").exists()


@pytest.mark.parametrize("args, msg", [
    (["--device", "tpu:0"], "unknown device 'tpu:0'"),
    (["--device", "cuda:0", "--backend", "onnxruntime"], "pip install 'mesc[gpu]'"),
    (["--exit", "exit7"], "no exit named 'exit7'"),
    (["--th-img", "0.5,0.5"], "gives 2 values for 3 exits"),
    (["--th-img", "2"], "thresholds must be in [0, 1]"),
    (["--target", "xavier"], "select TensorRT engines"),
])
def test_bad_options_are_one_line_errors(pkg_host, pngs, tmp_path, args, msg):
    code, text = _run(pkg_host, pngs / "img0.png", "-o", tmp_path / "o", *args)
    assert code == 2 and msg in text, text
    assert "Traceback" not in text


def test_tensorrt_backend_names_its_extra(pkg_host, pngs, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    code, text = _run(pkg_host, pngs / "img0.png", "-o", tmp_path / "o", "--backend", "tensorrt", "--device", "cuda")
    assert code == 2 and "pip install 'mesc[trt]'" in text, text


def test_altered_package_and_missing_inputs(pkg_host, pngs, tmp_path):
    bad = tmp_path / "pkg"
    shutil.copytree(pkg_host, bad)
    with open(bad / "onnx" / "head1.onnx", "ab") as f:
        f.write(b"\0")
    code, text = _run(bad, pngs / "img0.png", "-o", tmp_path / "o")
    assert code == 2 and "head1.onnx was altered" in text
    (bad / "onnx" / "head1.onnx").unlink()
    code, text = _run(bad, pngs / "img0.png", "-o", tmp_path / "o")
    assert code == 2 and "head1.onnx listed in the manifest is missing" in text
    code, text = _run(pkg_host, tmp_path / "nothing.png", "-o", tmp_path / "o3")
    assert code == 1 and "nothing.png: no such file" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = _run(pkg_host, empty, "-o", tmp_path / "o4")
    assert code == 2 and "no images found" in text
