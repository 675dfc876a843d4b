"""The package loader reports precisely what is wrong with a package on disk."""

import json
import re
from pathlib import Path

import pytest

from exported import export_toy

from mesc.errors import MescError, PackageError
from mesc.package import Package


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory):
    # the format before entry segments (uint8 normalised on the host): every manifest check below
    # indexes its segments; the entry segment's own checks are in test_entry_manifest.py
    return export_toy("skipnet", tmp_path_factory.mktemp("pkgs") / "toy", by_path=True, policy=None, verify=False,
                      host_normalize=True)


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
    # what the runtime relies on, checked at load rather than crashing deep inside a run
    (lambda m: m["exits"][1].update(name="exit0"), "exit 'exit0': duplicate exit name"),
    (lambda m: m["exits"].reverse(), "exits must be in model order"),
    (lambda m: m["exits"][0].update(segment="chunk0"), "segment 'chunk0' is a chunk, not a head"),
    (lambda m: m["exits"][0].update(tail="head1"), "tail 'head1' is a head, not a tail"),
    (lambda m: m["exits"][0].update(num_classes="5"), "exit 'exit0': num_classes must be a positive int"),
    (lambda m: m["exits"][0].update(logits="exit1_logits"), "logits 'exit1_logits' is not an output of its head"),
    (lambda m: m["exits"][0].update(confidence="nope"), "confidence 'nope' is not an output of its head"),
    (lambda m: m["exits"][0].update(th_pix_input="exit0_th_pix"), "th_pix_input 'exit0_th_pix' is not an input"),
    (lambda m: m["segments"][0]["inputs"][0].update(shape=[1, 3, 32, 128]), "input 'image' is float32[1, 3, 32, 128]"),
    (lambda m: m["segments"][0]["outputs"][0].update(dtype="complex"), "segment 'chunk0' output: dtype must be one of"),
    (lambda m: m["segments"][0]["outputs"][0].update(shape=[1, -8]), "non-negative ints or names"),
    (lambda m: m["segments"][2]["outputs"][0].update(name="exit0_logits"),
     "output 'exit0_logits' is already produced by segment 'head0'"),
    (lambda m: m["segments"][0].update(name=7), "segments[0]: name must be a non-empty string"),
    (lambda m: m["segments"][1].update(inputs="s1_2"), "segment 'head0': inputs must be a list"),
    (lambda m: m["input"]["normalization"].update(std=[0.2, 0, 0.2]), "input normalization: std must not be zero"),
    (lambda m: m["input"]["normalization"].update(mean=[0.5, 0.5]), "mean must be a list of 1 or 3 finite numbers"),
    (lambda m: m["input"]["normalization"].update(scale=float("nan")), "scale must be a positive finite number"),
    (lambda m: m["input"].update(shape=[1, 3, 0, 64]), "C, H and W must be positive ints"),
    (lambda m: m.update(latency={"onnxruntime/cpu": {"chunk0": -1.0}}),
     "latency['onnxruntime/cpu']: 'chunk0' must be a non-negative finite number"),
    (lambda m: m.update(latency={"onnxruntime/cpu": {"chunk9": 1.0}}), "'chunk9' is not a segment"),
    (lambda m: m.update(latency=[]), "'latency' must be an object"),
    (lambda m: m.update(precisions={"fp16": {"segments": ["x"]}}), "precisions['fp16']: 'segments' must be an object"),
    (lambda m: m.update(engines={"host": "fp32"}), "engines['host']: an engines entry must be an object"),
    (lambda m: m["files"].update({"onnx/chunk0.onnx": 12}), "expected a sha256 hex digest"),
    (lambda m: m.update(schema_version=True), "schema_version True is not supported"),
    (lambda m: m["exits"][0]["policy"].pop("th_img"), "exit 'exit0' policy: missing 'th_img'"),
    (lambda m: m["exits"][0]["policy"].update(band="eq8"),
     "exit 'exit0' policy: band must be one of ('paper', 'wide'), got 'eq8'"),
    (lambda m: m["exits"][0].update(labels="exit0_logits"), "labels, confidence, th_pix_input must all be set"),
    (lambda m: m["exits"][0].update(logits=["exit0_logits"]), "exit 'exit0': logits must be a non-empty string"),
    (lambda m: m["segments"][1]["inputs"].append({"name": "exit0_th_pix", "shape": [1], "dtype": "float32"}),
     "its head reads ['exit0_th_pix'], which no earlier segment gives"),
    (lambda m: m["segments"][2].update(inputs=[]), "segment 'chunk1': inputs and outputs must not be empty"),
    # found by test_manifest_fuzz (Python 3.8 stage): the typed view read it as a mapping
    (lambda m: m.update(source="0.1.0"), "mesc.json: 'source' must be an object, got str"),
])
def test_malformed_manifest(pkg_dir, tmp_path, edit, message):
    assert message in refusal(pkg_dir, tmp_path, edit)


def refusal(pkg_dir, tmp_path, edit) -> str:
    """The message of the PackageError that loading a copy of ``pkg_dir`` gives once ``edit``
    has changed its manifest."""
    d = _copy(pkg_dir, tmp_path)
    m = json.loads((d / "mesc.json").read_text())
    edit(m)
    (d / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError) as err:
        Package.load(d)
    return str(err.value)


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
    assert [s.name for s in pkg.segments_until("exit0")] == ["chunk0", "head0"]
    assert [s.name for s in pkg.segments_until("exit1")] == ["chunk0", "chunk1", "head1"]
    assert [s.name for s in pkg.segments_until("exit2")] == ["chunk0", "chunk1", "head2"]


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


# every path the manifest names stays inside the package ---------------------------------------

def _edit(d, edit):
    m = json.loads((d / "mesc.json").read_text())
    edit(m)
    (d / "mesc.json").write_text(json.dumps(m))


def _repoint(m, seg, rel):
    """Point a segment at ``rel``, with the checksum of the file it had (as an attacker would)."""
    old = m["segments"][seg]["file"]
    m["files"][rel] = m["files"].pop(old)
    m["segments"][seg]["file"] = rel


@pytest.mark.parametrize("rel", ["../outside/chunk0.onnx", "/tmp/chunk0.onnx", "onnx/../../chunk0.onnx",
                                 "onnx//chunk0.onnx", "./onnx/chunk0.onnx", "onnx\\..\\..\\x.onnx", "C:/x.onnx", ""])
def test_paths_outside_the_package_are_refused_before_reading(pkg_dir, tmp_path, rel, monkeypatch):
    d = _copy(pkg_dir, tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "chunk0.onnx").write_bytes((d / "onnx" / "chunk0.onnx").read_bytes())
    _edit(d, lambda m: _repoint(m, 0, rel))
    monkeypatch.setattr("mesc.package.package.sha256_file", lambda p: pytest.fail(f"{p} was hashed"))
    with pytest.raises(PackageError, match="must be relative and normalised|must be a non-empty string"):
        Package.load(d)


def test_a_checksum_entry_outside_is_not_hashed(pkg_dir, tmp_path, monkeypatch):
    d = _copy(pkg_dir, tmp_path)
    _edit(d, lambda m: m["files"].update({"../../../etc/passwd": "0" * 64}))
    monkeypatch.setattr("mesc.package.package.sha256_file", lambda p: pytest.fail(f"{p} was hashed"))
    with pytest.raises(PackageError, match=r"files: path '../../../etc/passwd' must be relative"):
        Package.load(d)


def test_a_symlink_leading_out_is_refused(pkg_dir, tmp_path):
    d = _copy(pkg_dir, tmp_path)
    (tmp_path / "outside").mkdir()
    (d / "onnx" / "chunk0.onnx").rename(tmp_path / "outside" / "chunk0.onnx")
    (d / "onnx" / "chunk0.onnx").symlink_to(tmp_path / "outside" / "chunk0.onnx")
    with pytest.raises(PackageError, match="'onnx/chunk0.onnx' leads outside the package"):
        Package.load(d)
    (d / "onnx" / "chunk0.onnx").unlink()
    (d / "onnx" / "chunk0.onnx").symlink_to(Path("..") / "onnx" / "head0.onnx")  # inside: allowed
    with pytest.raises(PackageError, match="onnx/chunk0.onnx was altered"):
        Package.load(d)


@pytest.mark.parametrize("field,edit", [
    ("precisions['fp16'] segments['chunk0']",
     lambda m: m.update(precisions={"fp16": {"segments": {"chunk0": "../x.onnx"}}})),
    ("engines['host']['fp32'] dir",
     lambda m: m.update(engines={"host": {"fp32": {"dir": "/abs", "segments": {}}}})),
    ("engines['host']['fp32'] segments['chunk0'] file",
     lambda m: m.update(engines={"host": {"fp32": {"dir": "engines/host-fp32",
                                                    "segments": {"chunk0": {"file": "engines/../../x.plan"}}}}})),
])
def test_every_path_field_is_confined(pkg_dir, tmp_path, field, edit):
    d = _copy(pkg_dir, tmp_path)
    _edit(d, edit)
    with pytest.raises(PackageError, match=re.escape(field)):
        Package.load(d)


def test_package_path_is_confined(pkg_dir):
    pkg = Package.load(pkg_dir)
    assert pkg.path("onnx/chunk0.onnx") == pkg_dir / "onnx" / "chunk0.onnx"
    with pytest.raises(PackageError, match="must be relative"):
        pkg.path("../toy/mesc.json")
