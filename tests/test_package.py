"""The package loader reports precisely what is wrong with a package on disk."""

import json
from pathlib import Path

import pytest

from mesc.errors import MescError, PackageError
from mesc.exporters.export import ExportOptions, export
from mesc.package import Package

TOY = str(Path(__file__).parent / "toys.py")


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkgs") / "toy"
    export(f"{TOY}:skipnet", out, options=ExportOptions(policy=None, verify=False))
    return out


def _copy(pkg_dir, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(pkg_dir, dst)
    return dst


def test_missing_file(pkg_dir, tmp_path):
    d = _copy(pkg_dir, tmp_path)
    (d / "onnx" / "head1.onnx").unlink()
    with pytest.raises(PackageError, match="onnx/head1.onnx listed in the manifest is missing"):
        Package.load(d)


def test_altered_file(pkg_dir, tmp_path):
    d = _copy(pkg_dir, tmp_path)
    with open(d / "onnx" / "chunk0.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(PackageError, match="onnx/chunk0.onnx was altered"):
        Package.load(d)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(schema_version=99), "schema_version 99 is not supported"),
    (lambda m: m["segments"][2]["inputs"].__setitem__(0, {"name": "nope", "shape": [1], "dtype": "float32"}),
     "input 'nope' is not produced"),
    (lambda m: m["exits"][0]["policy"].update(th_img=1.5), "th_img must be a number in [0, 1]"),
    (lambda m: m.pop("segments"), "missing 'segments'"),
    (lambda m: m["exits"][-1].update(enabled=False), "the final exit cannot be disabled"),
    (lambda m: m["exits"][0].update(enabled="no"), "enabled must be true or false"),
])
def test_malformed_manifest(pkg_dir, tmp_path, edit, message):
    d = _copy(pkg_dir, tmp_path)
    m = json.loads((d / "mesc.json").read_text())
    edit(m)
    (d / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError) as err:
        Package.load(d)
    assert message in str(err.value)


def test_not_a_package(tmp_path):
    with pytest.raises(PackageError, match="no mesc.json"):
        Package.load(tmp_path)
    (tmp_path / "mesc.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        Package.load(tmp_path)


def test_policy_round_trip_is_validated_and_atomic(pkg_dir, tmp_path):
    d = _copy(pkg_dir, tmp_path)
    pkg = Package.load(d)
    pkg.set_policy("exit1", th_pix=0.7, th_img=0.6)
    pkg.save()
    again = Package.load(d)
    assert again.policy("exit1")["th_pix"] == 0.7 and again.policy(1)["th_img"] == 0.6
    with pytest.raises(MescError, match="th_pix must be a number"):
        again.set_policy("exit0", th_pix=-1)
    with pytest.raises(MescError, match="no exit named"):
        again.set_policy("exit9", th_pix=0.5)
    assert sorted(p.name for p in d.iterdir()) == ["mesc.json", "onnx"]  # no temp files left


def test_segments_until(pkg_dir):
    pkg = Package.load(pkg_dir)
    assert [s["name"] for s in pkg.segments_until("exit0")] == ["chunk0", "head0"]
    assert [s["name"] for s in pkg.segments_until("exit1")] == ["chunk0", "chunk1", "head1"]
    assert [s["name"] for s in pkg.segments_until("exit2")] == ["chunk0", "chunk1", "head2"]


def test_written_files_get_the_usual_permissions(pkg_dir, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        d = _copy(pkg_dir, tmp_path)
        pkg = Package.load(d)
        pkg.save()
        assert stat.S_IMODE((d / "mesc.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)
