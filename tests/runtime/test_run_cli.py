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
    (["--deadline", "0"], "--deadline"),
    (["--deadline", "nan"], "--deadline must be a finite number > 0, got nan"),
    (["--deadline", "inf"], "--deadline must be a finite number > 0, got inf"),
    (["--deadline", "50", "--exit", "1"], "--deadline runs anytime mode"),
])
def test_bad_options_are_one_line_errors(pkg_host, pngs, tmp_path, args, msg):
    code, text = _run(pkg_host, pngs / "img0.png", "-o", tmp_path / "o", *args)
    assert code == 2 and msg in text, text
    assert "Traceback" not in text


def test_run_with_a_deadline_keeps_the_last_prediction_in_time(pkg_host, pngs, tmp_path):
    from mesc.package import Package

    (pngs / "broken.png").unlink()
    copy = tmp_path / "pkg"
    shutil.copytree(pkg_host, copy)
    pkg = Package.load(copy)
    # recorded: the final exit's head takes 1000 s, everything else nothing
    final_head = pkg.exits[-1].segment
    pkg.manifest["latency"] = {"onnxruntime/cpu": {s.name: 1e6 if s.name == final_head else 0.0
                                                   for s in pkg.segments}}
    pkg.save()
    code, text = _run(copy, pngs, "-o", tmp_path / "out", "--deadline", "30000", "--th-img", "1")
    assert code == 0, text
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["summary"]["exits"] == {"exit0": 0, "exit1": 3, "exit2": 0}
    assert "deadline 30000 ms: missed by 0 of 3 call(s)" in text


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


# -- where `mesc run` may write ----------------------------------------------------------------

def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("where", ["inside images", "images", "inside package"])
def test_an_output_overlapping_an_input_is_refused(pkg_host, pngs, where):
    before = _snapshot(pngs)
    out = {"inside images": pngs / "out", "images": pngs, "inside package": pkg_host / "out"}[where]
    code, text = _run(pkg_host, pngs, "-o", out, "--force")
    assert code == 2 and "mesc never writes over what it reads" in text and str(out) in text
    assert _snapshot(pngs) == before and not (pkg_host / "out").exists() and not (pngs / "out").exists()


def test_an_output_holding_an_image_it_reads_is_refused(pkg_host, pngs, tmp_path):
    code, text = _run(pkg_host, pngs / "img0.png", "-o", pngs.parent, "--force")
    assert code == 2 and "contains the input IMAGES" in text


def test_force_never_writes_into_a_folder_of_other_files(pkg_host, pngs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    code, text = _run(pkg_host, pngs, "-o", out, "--force")
    assert code == 2 and "holds 1 file(s) mesc did not write: holiday.jpg" in text
    assert _snapshot(out) == {"holiday.jpg": b"\xff\xd8 my photo"}


def test_force_replaces_a_previous_run_whole(pkg_host, pngs, tmp_path):
    (pngs / "broken.png").unlink()
    out = tmp_path / "out"
    assert _run(pkg_host, pngs, "-o", out)[0] == 0
    assert json.loads((out / "results.json").read_text())["written_by"] == "mesc run"
    code, text = _run(pkg_host, pngs / "img1.png", "-o", out, "--force")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["img1.png", "results.csv", "results.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_label_maps_never_clobber_each_other(pkg_host, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        img = np.zeros((32, 64, 3), np.uint8)
        Image.fromarray(img).save(tmp_path / sub / ("X.png" if sub == "a" else "x.png"))
    code, text = _run(pkg_host, tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out")
    assert code == 0, text
    names = [r["output"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["images"]]
    assert names == ["X.png", "x-2.png"]


def test_the_current_directory_and_unwritable_places_are_refused(pkg_host, pngs, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, text = _run(pkg_host, pngs, "-o", ".", "--force")
    assert code == 2 and "current directory" in text
    (tmp_path / "file").write_text("")
    code, text = _run(pkg_host, pngs, "-o", tmp_path / "file" / "out")
    assert code == 2 and "is not a directory" in text and "Traceback" not in text


# the bad inputs `mesc run` refuses before its output folder exists
EARLY_FAILURES = [
    ("no package", lambda pkg, imgs, empty: ["{tmp}/nope", imgs], "nope"),
    ("not a package", lambda pkg, imgs, empty: [empty, imgs], "mesc.json"),
    ("threshold out of range", lambda pkg, imgs, empty: [pkg, imgs, "--th-img", "1.5"], "[0, 1]"),
    ("threshold not a number", lambda pkg, imgs, empty: [pkg, imgs, "--th-pix", "high"], "--th-pix"),
    ("threshold count", lambda pkg, imgs, empty: [pkg, imgs, "--th-img", "0.1,0.2"], "2 values for 3 exits"),
    ("exit name", lambda pkg, imgs, empty: [pkg, imgs, "--exit", "exit9"], "exit9"),
    ("device", lambda pkg, imgs, empty: [pkg, imgs, "--device", "tpu"], "tpu"),
    ("no images", lambda pkg, imgs, empty: [pkg, empty], "no images found"),
    ("batch", lambda pkg, imgs, empty: [pkg, imgs, "--batch", "0"], "--batch"),
]


@pytest.mark.parametrize("case,argv,message", EARLY_FAILURES, ids=[c[0] for c in EARLY_FAILURES])
def test_early_failures_leave_no_output_folder(pkg_host, pngs, tmp_path, case, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    args = [str(a).format(tmp=tmp_path) for a in argv(pkg_host, pngs, empty)]
    code, text = _run(*args, "-o", out)
    assert code == 2 and message in text, text
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "imgs"]
