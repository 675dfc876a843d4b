"""`mesc export` / `mesc inspect` end to end, and bad input leaving nothing behind."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mesc.cli import cli
from mesc.errors import ExportError, ModelLoadError
from mesc.exporters.export import ExportOptions, export
from mesc.package import Package

TOY = str(Path(__file__).parents[1] / "toys.py")


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _leftovers(parent: Path):
    return [p.name for p in parent.iterdir()]


def test_export_user_file_outside_project(tmp_path):
    # a copy of the model file in a directory that is not on sys.path
    user = tmp_path / "elsewhere" / "my_net.py"
    user.parent.mkdir()
    shutil.copy(TOY, user)
    out = tmp_path / "pkg"
    res = run("export", "--model", f"{user}:skipnet", "--policy", "none", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "head2" in res.output and "share" in res.output
    pkg = Package.load(out)
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", "head0", "chunk1", "head1", "head2"]
    assert pkg.manifest["source"]["model"] == f"{user}:skipnet"
    assert pkg.manifest["source"]["opset"] == 17
    assert all(s.flops > 0 for s in pkg.segments)
    res = run("inspect", str(out))
    assert res.exit_code == 0 and "exit2" in res.output and "live tensors" in res.output
    assert "uint8     image_uint8 N x H x W x C, normalised on the device by segment 'entry'" in res.output
    res = run("inspect", "--json", str(out))
    assert json.loads(res.output)["schema_version"] == 1


def test_host_normalize_exports_without_entry_and_inspect_says_so(tmp_path):
    out = tmp_path / "pkg"
    res = run("export", "--model", f"{TOY}:skipnet", "--policy", "none", "--host-normalize", "--no-verify",
              "-o", str(out))
    assert res.exit_code == 0, res.output
    pkg = Package.load(out)
    assert pkg.entry is None and [s.name for s in pkg.segments][0] == "chunk0"
    res = run("inspect", str(out))
    assert res.exit_code == 0 and "uint8     normalised on the host (no entry segment" in res.output


def test_onnx_files_check_and_have_meaningful_names(tmp_path):
    import onnx

    pkg = export(f"{TOY}:skipnet", tmp_path / "pkg", options=ExportOptions(policy=None))
    for seg in pkg.segments:
        model = onnx.load(str(pkg.path(seg.file)))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version == 17
        assert [i.name for i in model.graph.input] == [t.name for t in seg.inputs]
    assert pkg.segments[0].inputs[0].name == "image_uint8" and pkg.segments[0].outputs[0].name == "image"
    assert pkg.segment("chunk0").inputs[0].name == "image"
    assert pkg.segment("head0").outputs[0].name == "exit0_logits"
    assert pkg.segment("chunk0").outputs[0].name.startswith("s1")  # named after the producing module


def test_existing_directory_refused_without_force(tmp_path):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_text("user work")
    res = CliRunner().invoke(cli, ["export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(out)])
    assert res.exit_code == 2
    assert "already exists" in res.output and "--force" in res.output
    assert (out / "keep.txt").read_text() == "user work"
    # --force replaces only a package: a folder of user files survives it
    res = run("export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(out), "--force")
    assert res.exit_code == 2 and "replaces only a mesc package" in res.output
    assert (out / "keep.txt").read_text() == "user work" and not (out / "mesc.json").exists()
    (out / "keep.txt").unlink()
    out.rmdir()
    assert run("export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(out)).exit_code == 0
    res = run("export", "-m", f"{TOY}:skipnet", "--policy", "none", "--exits", "0,2", "-o", str(out), "--force")
    assert res.exit_code == 0
    assert (out / "mesc.json").exists() and len(Package.load(out).exits) == 2
    assert _leftovers(tmp_path) == ["pkg"]


@pytest.mark.parametrize("args,message", [
    (["-m", f"{TOY}:single_output"], "returns a single tensor"),
    (["-m", f"{TOY}:data_dependent"], "data-dependent"),
    (["-m", "no/such/file.py:net"], "does not exist"),
    (["-m", f"{TOY}:nonexistent"], "has no callable 'nonexistent'"),
    (["-m", f"{TOY}:skipnet", "--exits", "0,5"], "out of range"),
    (["-m", f"{TOY}:skipnet", "--input-shape", "3x32x64"], "NxCxHxW"),
    (["-m", f"{TOY}:skipnet", "--input-shape", "1x4x32x64"], "input shape"),
    (["-m", f"{TOY}:skipnet", "--edge-band", "wide"], "Invalid value for '--edge-band': 'wide' is not 'paper'"),
    (["-m", f"{TOY}:chained_exits", "--input-shape", "1x3x32x64"], "exit exit0's logits feed"),
])
def test_bad_input_clear_message_nothing_written(tmp_path, args, message):
    out = tmp_path / "pkg"
    res = CliRunner().invoke(cli, ["export", *args, "--policy", "none", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert _leftovers(tmp_path) == []


def test_data_dependent_error_names_module_and_line(tmp_path):
    with pytest.raises(ExportError) as err:
        export(f"{TOY}:data_dependent", tmp_path / "pkg", options=ExportOptions(policy=None))
    assert "toys.py:" in str(err.value) and "y.mean() > 0" in str(err.value)


def test_mismatched_checkpoint(tmp_path):
    import torch

    ckpt = tmp_path / "bad.pt"
    torch.save({"s1.0.weight": torch.zeros(1)}, ckpt)
    with pytest.raises(ModelLoadError) as err:
        export(f"{TOY}:skipnet", tmp_path / "pkg", weights=str(ckpt), options=ExportOptions(policy=None))
    assert "bad.pt" in str(err.value)
    assert not (tmp_path / "pkg").exists()


def test_checkpoint_round_trip(tmp_path):
    import torch
    from toys import skipnet

    net = skipnet()
    for p in net.parameters():
        p.data.normal_()
    ckpt = tmp_path / "good.pt"
    torch.save(net.state_dict(), ckpt)
    pkg = export(f"{TOY}:skipnet", tmp_path / "pkg", weights=str(ckpt), options=ExportOptions(policy=None))
    assert pkg.manifest["source"]["weights_sha256"]
    assert pkg.manifest["verification"]["exit2"]["max_abs_err"] <= 1e-4 * pkg.manifest["verification"]["exit2"]["scale"]


@pytest.mark.parametrize("body, why", [
    ("import sys\nsys.exit(3)\n", r"importing model file .*quits.py failed: it called sys.exit\(3\)"),
    ("raise BaseException('odd')\n", r"importing model file .*quits.py failed: BaseException: odd"),
    ("import sys\ndef net():\n    sys.exit('no')\n", r"factory '.*quits.py:net' failed: it called sys.exit\('no'\)"),
])
def test_a_model_file_that_exits_is_a_model_load_error(tmp_path, body, why):
    from mesc.exporters.model_spec import load_model

    user = tmp_path / "quits.py"
    user.write_text(body)
    with pytest.raises(ModelLoadError, match=why):
        load_model(f"{user}:net")
    res = CliRunner().invoke(cli, ["export", "-m", f"{user}:net", "-o", str(tmp_path / "pkg")])
    assert res.exit_code == 2 and "quits.py" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "pkg").exists()


def test_ctrl_c_while_importing_a_model_file_stays_ctrl_c(tmp_path):
    from mesc.exporters.model_spec import load_model

    user = tmp_path / "slow.py"
    user.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_model(f"{user}:net")


# -- where `mesc export` may write -------------------------------------------------------------

def test_an_output_holding_the_checkpoint_or_model_file_is_refused(tmp_path):
    import torch
    from toys import skipnet

    ckpt = tmp_path / "ckpt.pt"
    torch.save(skipnet().state_dict(), ckpt)
    before = ckpt.read_bytes()
    res = run("export", "-m", f"{TOY}:skipnet", "-w", str(ckpt), "--policy", "none", "-o", str(tmp_path), "--force")
    assert res.exit_code == 2 and f"contains the input --weights {ckpt}" in res.output
    assert ckpt.read_bytes() == before
    res = run("export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(Path(TOY).parent), "--force")
    assert res.exit_code == 2 and "contains the input --model" in res.output


def test_the_current_directory_and_unwritable_places_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("export", "-m", f"{TOY}:skipnet", "-o", ".", "--force")
    assert res.exit_code == 2 and "current directory" in res.output
    (tmp_path / "file").write_text("")
    res = run("export", "-m", f"{TOY}:skipnet", "-o", str(tmp_path / "file" / "pkg"))
    assert res.exit_code == 2 and "is not a directory" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _main(capfd, *args):
    """The ``mesc`` entry point in this process, with what reaches file descriptors 1 and 2."""
    from mesc.cli import main

    with pytest.raises(SystemExit) as stop:
        main(list(args))
    out, err = capfd.readouterr()
    return stop.value.code, out, err


def test_opset_out_of_range_is_one_line_before_any_work(tmp_path, capfd):
    code, out, err = _main(capfd, "export", "-m", f"{TOY}:skipnet", "-o", str(tmp_path / "pkg"), "--opset", "99")
    assert code == 2 and out == ""
    assert err == ("mesc: error: --opset 99 is not supported: mesc exports opsets 13 to 20; TensorRT 8.5/8.6 parse "
                   "up to 17 (the default), TensorRT 10 and later up to 20\n")
    assert _leftovers(tmp_path) == []


def test_a_failing_onnx_export_prints_one_line_not_torchs_graph(tmp_path, capfd, monkeypatch):
    from mesc.exporters import onnx_io

    monkeypatch.setattr(onnx_io, "MAX_OPSET", 99)  # let torch itself refuse the opset
    code, out, err = _main(capfd, "export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(tmp_path / "pkg"),
                           "--opset", "99", "--no-verify")
    assert code == 2 and out == ""  # torch printed the TorchScript graph here, from C++
    errors = [line for line in err.splitlines() if line.startswith("mesc:")]
    assert len(errors) == 1 and "Unsupported onnx_opset_version: 99" in errors[0], err
    assert len(err.splitlines()) <= 2 and "graph(" not in err  # the other line: the progress announcement
    assert _leftovers(tmp_path) == []


# --target / --precision: export, prepare and (where TensorRT is here) build in one go ---------------

def _calibration_images(folder, count=6):
    from mesc.selftest.subject import random_images, write_images

    return write_images(random_images((1, 3, 32, 64), count, seed=0), folder)


def test_export_for_a_target_fp16_prints_the_device_command(tmp_path):
    out = tmp_path / "pkg"
    res = run("export", "-m", f"{TOY}:skipnet", "-o", str(out), "--target", "host", "--precision", "fp16")
    assert res.exit_code == 0, res.output
    pkg = Package.load(out)
    assert set(pkg.manifest["precisions"]) == {"fp16"}
    assert not pkg.manifest["engines"]  # no TensorRT here
    assert f"mesc build {out} --target host --precision fp16" in res.output
    assert f"mesc selftest {out} --target host --precision fp16" in res.output
    assert _leftovers(tmp_path) == ["pkg"]


def test_export_for_a_target_int8_with_calibration_images(tmp_path):
    images = _calibration_images(tmp_path / "calib")
    out = tmp_path / "pkg"
    res = run("export", "-m", f"{TOY}:skipnet", "-o", str(out), "--target", "orin", "--precision", "int8",
              "--calib-data", str(images), "--max-images", "4")
    assert res.exit_code == 0, res.output
    entry = Package.load(out).manifest["precisions"]["int8"]
    assert entry["images"] == 4 and entry["accuracy"] and entry["qdq"]
    assert f"mesc build {out} --target orin --precision int8\n" in res.output  # prepared: no images needed there
    assert sorted(_leftovers(tmp_path)) == ["calib", "pkg"]


@pytest.mark.parametrize("args, message", [
    (["--target", "gtx1080ti", "--precision", "fp16"], "no fast FP16"),
    (["--target", "xavier", "--precision", "int8"], "--calib-data"),
    (["--target", "nosuch"], "unknown target 'nosuch'"),
    (["--precision", "fp32", "--calib-data", "."], "fp32 needs none"),
    (["--precision", "int8", "--calib-data", "no/such/folder"], "not a folder"),
    (["--calib-data", "."], "--calib-data goes with --precision"),
])
def test_export_for_a_target_refused_before_exporting(tmp_path, monkeypatch, args, message):
    def no_export(*a, **k):
        raise AssertionError("exported before the request was checked")

    monkeypatch.setattr("mesc.exporters.export.export", no_export)
    out = tmp_path / "pkg"
    res = CliRunner().invoke(cli, ["export", "-m", f"{TOY}:skipnet", "-o", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert _leftovers(tmp_path) == []


def test_a_failed_prepare_leaves_no_package(tmp_path, monkeypatch):
    from mesc.errors import MescError

    def failing_prepare(*a, **k):
        raise MescError("INT8 quantization failed")

    monkeypatch.setattr("mesc.calibration.precision.prepare", failing_prepare)
    images = _calibration_images(tmp_path / "calib", count=2)
    res = CliRunner().invoke(cli, ["export", "-m", f"{TOY}:skipnet", "-o", str(tmp_path / "pkg"),
                                   "--precision", "int8", "--calib-data", str(images)])
    assert res.exit_code == 2 and "INT8 quantization failed" in res.output, res.output
    assert _leftovers(tmp_path) == ["calib"]


def test_export_for_a_target_builds_where_tensorrt_is_here(tmp_path, monkeypatch):
    calls = []

    def build(package, target, precision, **kw):  # records what mesc asks of the builder
        calls.append((str(package), target, precision, Package.load(package).manifest.get("precisions", {})))
        return {"segments": {"chunk0": {}}, "dir": f"engines/{target}-{precision}", "trt_version": "10.3.0"}

    monkeypatch.setattr("mesc.cli.export._builds_here", lambda target: True)
    monkeypatch.setattr("mesc.engines.build.build", build)
    out = tmp_path / "pkg"
    res = run("export", "-m", f"{TOY}:skipnet", "--policy", "none", "-o", str(out), "--precision", "fp16")
    assert res.exit_code == 0, res.output
    assert [c[:3] for c in calls] == [(str(out), "host", "fp16")]
    assert "fp16" in calls[0][3], "the engines are built from the package prepared in place"
    assert "engines/host-fp16" in res.output and "mesc build" not in res.output
