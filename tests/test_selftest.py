"""`mesc selftest` on the CPU: ONNX Runtime CPU against itself (FP32) and prepared FP16 graphs
against FP32, the JSON report, user errors, and a planted disagreement that must FAIL."""

import json
import subprocess
import sys

import onnx
import pytest
from click.testing import CliRunner
from exported import export_toy
from onnx import numpy_helper

from mesc.cli import cli
from mesc.package import Package, sha256_file

CPU = ["--backend", "onnxruntime", "--device", "cpu"]
FEW = ["--images", "4", "--runs", "1"]


def run(*args):
    return CliRunner().invoke(cli, ["selftest", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def fp16_package(tmp_path_factory):
    """The toy net with the in-graph policy and its FP16 graphs (prepared without images)."""
    from mesc.calibration.precision import prepare

    out = export_toy("skipnet", tmp_path_factory.mktemp("selftest") / "toy")
    prepare(out, ("fp16",))
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_fp32_cli_passes_and_writes_the_report(fp16_package, tmp_path):
    report = tmp_path / "selftest.json"
    res = run(str(fp16_package), *CPU, *FEW, "--json", str(report))
    assert res.exit_code == 0, res.output
    assert "selftest PASSED" in res.output and "FAIL" not in res.output
    assert "PASS  exit0 label agreement 1 >= 0.999" in res.output
    data = json.loads(report.read_text())
    assert data["schema"] == "mesc-selftest/1" and data["passed"] is True and data["error"] is None
    assert data["request"] == {"package": str(fp16_package), "demo": False, "target": "host", "precision": "fp32",
                               "backend": "onnxruntime", "device": "cpu", "images": 4}
    for key in ("gpu", "compute_capability", "driver", "cuda", "tensorrt", "onnxruntime", "polygraphy",
                "cuda_python", "torch"):
        assert data["environment"][key], key  # a version, a name, or "absent"
    assert "CPUExecutionProvider" in data["environment"]["onnxruntime_providers"]
    pkg = Package.load(fp16_package)
    assert set(data["segments"]) == {s.name for s in pkg.segments}
    assert all(s["ms"] > 0 and s["rel_err"] == 0 for s in data["segments"].values())
    assert set(data["decision_ms"]) == {f"decision:{e.name}" for e in pkg.exits}
    assert set(data["exits"]) == {e.name for e in pkg.exits}
    assert all(e["agreement"] == 1.0 and e["max_confidence_err"] == 0 for e in data["exits"].values())
    assert data["decisions"] == {"images": 4, "same": 4, "differ": []}
    assert [c["name"] for c in data["checks"]][-1].startswith("exit decisions")
    assert all({"name", "value", "op", "bar", "passed"} <= set(c) for c in data["checks"])
    assert data["images"] == {"count": 4, "source": "random smooth images", "batch": 1}
    # the path the backend took is named (a CPU runs ONNX Runtime's synchronous path, no graphs)
    assert data["runtime_path"] == {"backend": "onnxruntime", "io": "direct", "cuda_graphs": "off",
                                    "graph_fallbacks": {}}
    assert "runtime path: onnxruntime, direct I/O, CUDA graphs off" in res.output


def test_fp16_graphs_against_fp32(fp16_package):
    from mesc.selftest import selftest

    report = selftest(fp16_package, precision="fp16", backend="onnxruntime", device="cpu", images=4, runs=1)
    assert report["passed"], report["checks"]
    errors = [e["rel_logit_err"] for e in report["exits"].values()]
    assert all(0 < err < 0.03 for err in errors), "FP16 graphs ran, not the FP32 ones"


def test_planted_disagreement_fails_with_exit_status_1(fp16_package, tmp_path):
    """One segment's FP16 graph replaced by another graph of the same I/O (its weights negated)."""
    pkg_dir = _copy(fp16_package, tmp_path / "planted")
    manifest = json.loads((pkg_dir / "mesc.json").read_text())
    rel = manifest["precisions"]["fp16"]["segments"]["head1"]
    model = onnx.load(str(pkg_dir / rel))
    for init in model.graph.initializer:
        if len(init.dims) == 4:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(pkg_dir / rel))
    manifest["files"][rel] = sha256_file(pkg_dir / rel)
    (pkg_dir / "mesc.json").write_text(json.dumps(manifest))
    report = tmp_path / "r.json"
    res = run(str(pkg_dir), *CPU, *FEW, "--precision", "fp16", "--json", str(report))
    assert res.exit_code == 1, res.output
    assert "FAIL  exit1 label agreement" in res.output and "selftest FAILED" in res.output
    assert "PASS  exit0 label agreement" in res.output  # the segments before it still agree
    data = json.loads(report.read_text())
    assert data["passed"] is False
    assert data["segments"]["head1"]["rel_err"] > 0.1 and data["segments"]["chunk0"]["rel_err"] < 0.03
    assert not next(c for c in data["checks"] if c["name"] == "exit1 label agreement")["passed"]


@pytest.mark.parametrize("args, message", [
    (["--precision", "int8"], "no prepared int8 graphs; run 'mesc prepare"),
    (["--backend", "tensorrt", "--device", "cpu"], "--device cuda:0"),
    (["--target", "nosuch"], "unknown target 'nosuch'"),
    (["--device", "tpu"], "unknown device"),
])
def test_user_errors_exit_2(fp16_package, args, message):
    res = CliRunner().invoke(cli, ["selftest", str(fp16_package), "--backend", "onnxruntime", *FEW, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_an_error_is_in_the_json_report(tmp_path):
    report = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["selftest", str(tmp_path / "nothing"), *CPU, "--json", str(report)])
    assert res.exit_code == 2
    data = json.loads(report.read_text())
    assert "no such package directory" in data["error"] and data["environment"]["onnxruntime"]


def test_json_report_never_lands_in_the_package(fp16_package):
    before = sorted(p.name for p in fp16_package.iterdir())
    res = CliRunner().invoke(cli, ["selftest", str(fp16_package), *CPU, "--json", str(fp16_package / "r.json")])
    assert res.exit_code == 2 and "--json" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in fp16_package.iterdir()) == before


def test_an_existing_report_is_replaced_only_with_force(fp16_package, tmp_path):
    report = tmp_path / "selftest.json"
    report.write_text("yesterday's report")
    res = run(str(fp16_package), *CPU, *FEW, "--json", str(report))
    assert res.exit_code == 2 and "already exists; pass --force" in res.output
    assert report.read_text() == "yesterday's report"
    res = run(str(fp16_package), *CPU, *FEW, "--json", str(report), "--force")
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["passed"] is True


def test_without_torch_asks_for_a_package(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    res = CliRunner().invoke(cli, ["selftest", *CPU])
    assert res.exit_code == 2
    assert "pass a package" in res.output and "pip install 'mesc[export]'" in res.output


def test_defaults_on_a_machine_without_a_gpu():
    from mesc.runtime.devices import cuda_device_count
    from mesc.selftest import resolve

    if cuda_device_count():
        pytest.skip("this machine has a CUDA device")
    assert resolve(None, None) == ("onnxruntime", "cpu")
    assert resolve(None, "cuda:1")[1] == "cuda:1"


def test_a_user_package_never_imports_torch(fp16_package):
    code = ("import sys; from mesc.selftest import selftest; "
            f"r = selftest({str(fp16_package)!r}, backend='onnxruntime', device='cpu', images=2, runs=1); "
            "sys.exit(3 if 'torch' in sys.modules else 0 if r['passed'] else 1)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow  # about 12 s alone, 20 s on a busy 2-core machine
def test_demo_default_end_to_end(tmp_path):
    """Exactly the GPU check's command line, on the CPU: the demo exported, then ORT CPU vs ORT CPU."""
    pytest.importorskip("torch")  # the demo is exported here
    report = tmp_path / "selftest.json"
    res = run(*CPU, "--json", str(report))
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["request"]["demo"] and data["images"]["source"] == "synthetic scenes"
    assert data["package"]["exits"] == ["exit0", "exit1", "exit2"] and data["passed"]


@pytest.mark.slow
def test_demo_int8_against_fp32(tmp_path):
    """The demo's INT8 graphs (calibrated here on other scenes) clear INT8's bars."""
    pytest.importorskip("torch")  # the demo is exported here
    report = tmp_path / "selftest.json"
    res = run(*CPU, "--precision", "int8", "--runs", "1", "--json", str(report))
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["package"]["precisions"] == ["int8"]
    assert all(0 < e["rel_logit_err"] and e["agreement"] >= 0.95 for e in data["exits"].values())
