"""The policy graph's window form chosen per target in a package: ``mesc export --target``
compiles ``pool`` into the heads and records it, ``mesc prepare --target`` compiles it into the
prepared graphs only, ``--policy-pooling`` overrides, a package without the key means
``shift``, and ``mesc inspect`` shows what each exit computes."""

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from exported import export_toy

import mesc
from mesc.cli import cli
from mesc.errors import MescError, PackageError
from mesc.package import Package

POOL_OPS = {"AveragePool", "MaxPool"}


def pool_ops(path) -> set:
    return {n.op_type for n in onnx.load(str(path)).graph.node} & POOL_OPS


def heads(pkg):
    return {ex.name: pkg.path(pkg.segment(ex.segment).file) for ex in pkg.exits}


@pytest.fixture(scope="module")
def shift_pkg(tmp_path_factory):
    return Package.load(export_toy("skipnet", tmp_path_factory.mktemp("shift") / "pkg", 6, policy="top1",
                                   th_pix=0.6, verify=False, dynamic_batch=True))


@pytest.fixture(scope="module")
def pool_pkg(tmp_path_factory):
    return Package.load(export_toy("skipnet", tmp_path_factory.mktemp("pool") / "pkg", 6, policy="top1",
                                   th_pix=0.6, verify=False, dynamic_batch=True, target="orin"))


def run(root, x, precision=None):
    with mesc.load(root, precision=precision) as pipe:
        out = pipe.tensors(x)
        return {ex.name: (out[ex.labels], out[ex.confidence]) for ex in pipe.pkg.exits}


def images(n=4):
    return np.random.default_rng(5).standard_normal((n, 3, 32, 64)).astype(np.float32)


def test_export_for_a_target_compiles_pool_and_records_it(shift_pkg, pool_pkg):
    assert all(ex.pooling == "shift" and "pooling" not in ex.policy for ex in shift_pkg.exits)
    assert all(not pool_ops(p) for p in heads(shift_pkg).values())
    assert [ex.policy["pooling"] for ex in pool_pkg.exits] == ["pool"] * len(pool_pkg.exits)
    assert all(pool_ops(p) == POOL_OPS for p in heads(pool_pkg).values())
    # the same labels and confidences, image by image (ONNX Runtime CPU)
    a, b = run(shift_pkg.root, images()), run(pool_pkg.root, images())
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        assert np.abs(a[name][1].astype(np.float64) - b[name][1]).max() <= 1e-6, name


def test_the_override_wins(tmp_path):
    pkg = Package.load(export_toy("skipnet", tmp_path / "a", policy="top1", verify=False, target="orin",
                                  policy_pooling="shift"))
    assert all("pooling" not in ex.policy for ex in pkg.exits)
    pkg = Package.load(export_toy("skipnet", tmp_path / "b", policy="top1", verify=False, policy_pooling="pool"))
    assert all(ex.policy["pooling"] == "pool" for ex in pkg.exits)


def test_a_package_without_the_key_means_shift_and_a_bad_value_is_named(pool_pkg, tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(pool_pkg.root, root)
    m = json.loads((root / "mesc.json").read_text())
    m["exits"][0]["policy"]["pooling"] = "avg"
    (root / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"exit.*policy: pooling must be one of \('shift', 'pool'\), got 'avg'"):
        Package.load(root)
    del m["exits"][0]["policy"]["pooling"]
    (root / "mesc.json").write_text(json.dumps(m))
    assert Package.load(root).exits[0].pooling == "shift"


def test_the_pooling_is_compiled_in_and_cannot_be_set(pool_pkg, tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(pool_pkg.root, root)
    pkg = Package.load(root)
    with pytest.raises(MescError, match="pooling is compiled into the exit's graph; re-export"):
        pkg.set_policy(pkg.exits[0].name, pooling="shift")


def test_prepare_for_a_target_repools_the_prepared_heads_only(shift_pkg, tmp_path):
    roots = {}
    for target in (None, "orin"):
        root = roots[target] = tmp_path / str(target)
        shutil.copytree(shift_pkg.root, root)
        before = {p.name: p.read_bytes() for p in (root / "onnx").iterdir()}
        args = ["prepare", str(root), "--precision", "fp16"] + (["--target", target] if target else [])
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert {p.name: p.read_bytes() for p in (root / "onnx").iterdir()} == before, "the package's own graphs"
    plain, gpu = Package.load(roots[None]), Package.load(roots["orin"])
    names = [ex.name for ex in gpu.exits]
    assert dict(plain.precisions["fp16"].policy_pooling) == {n: "shift" for n in names}
    assert dict(gpu.precisions["fp16"].policy_pooling) == {n: "pool" for n in names}
    for ex in gpu.exits:
        seg = ex.segment
        assert pool_ops(gpu.path(gpu.precisions["fp16"].segments[seg])) == POOL_OPS
        assert not pool_ops(plain.path(plain.precisions["fp16"].segments[seg]))
    # the same FP16 logits under both window forms: the same labels and confidences
    a, b = run(roots[None], images(), "fp16"), run(roots["orin"], images(), "fp16")
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        assert np.abs(a[name][1].astype(np.float64) - b[name][1]).max() <= 1e-6, name
    res = CliRunner().invoke(cli, ["inspect", str(roots["orin"])])
    assert res.exit_code == 0, res.output
    assert "prepared: fp16 (windows: " + ", ".join(f"{n} pool" for n in names) + ")" in res.output


def test_inspect_shows_each_exits_windows(pool_pkg, shift_pkg):
    for pkg, form in ((pool_pkg, "pool"), (shift_pkg, "shift")):
        res = CliRunner().invoke(cli, ["inspect", str(pkg.root)])
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        head = next(i for i, line in enumerate(lines) if line.strip().startswith("exit ") and "windows" in line)
        col = lines[head].index("windows")
        for row in lines[head + 1:head + 1 + len(pkg.exits)]:
            assert row[col:].split()[0] == form, row


def test_bad_choices_are_one_line(shift_pkg, tmp_path):
    res = CliRunner().invoke(cli, ["prepare", str(shift_pkg.root), "--precision", "fp16", "--target", "tx2"])
    assert res.exit_code != 0 and "unknown target 'tx2'" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["export", "--policy-pooling", "fast", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "'fast' is not one of 'auto', 'shift', 'pool'" in res.output


def test_a_precision_entry_naming_a_bad_pooling_is_refused(shift_pkg, tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(shift_pkg.root, root)
    m = json.loads((root / "mesc.json").read_text())
    m["precisions"] = {"fp16": {"segments": {}, "policy_pooling": {"exit9": "pool"}}}
    (root / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"precisions\['fp16'\] policy_pooling: 'exit9' is not an exit"):
        Package.load(root)
    m["precisions"]["fp16"]["policy_pooling"] = {shift_pkg.exits[0].name: "avg"}
    (root / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"policy_pooling: exit '.*': expected one of \('shift', 'pool'\), got 'avg'"):
        Package.load(root)


def test_an_fp32_build_for_a_target_builds_from_pool_heads_beside_the_engines(shift_pkg, tmp_path, monkeypatch):
    """mesc's side of ``mesc build`` (``compat.build_engine``, the one call into TensorRT,
    records the graph it is given): the engines of a shift package come from pool heads
    written in the engines' own directory, the package's onnx/ untouched."""
    from mesc.engines.build import build_engines, pooling_notes
    from mesc.engines.targets import plan_build
    from mesc.exporters.policy.pooling import HeadRepooler, package_poolings
    from mesc.runtime.backends.trt import compat

    root = tmp_path / "pkg"
    shutil.copytree(shift_pkg.root, root)
    pkg = Package.load(root)
    before = {p.name: p.read_bytes() for p in (root / "onnx").iterdir()}
    given = {}

    def build_engine(onnx_path, plan, engine_path, *args, **kwargs):
        given[engine_path.stem] = pool_ops(onnx_path)
        engine_path.write_bytes(b"plan")
        return {"io": [], "layers": {}}

    monkeypatch.setattr(compat, "build_engine", build_engine)
    plan = plan_build("orin", "fp32", "10.3")
    want = package_poolings(pkg, "auto", "orin")
    assert pooling_notes(pkg, plan, want) == []  # FP32 heads are recompiled, nothing to tell
    entry = build_engines(pkg, plan, {"trt_version": "10.3.0", "device": "test", "compute_capability": "8.7"},
                          {s.name: s.file for s in pkg.segments}, heads=HeadRepooler(pkg, want))
    for ex in pkg.exits:
        assert given[ex.segment] == POOL_OPS
        assert entry["segments"][ex.segment]["source_onnx"] == f"engines/orin-fp32/{ex.segment}.onnx"
    assert not any(given[s.name] for s in pkg.segments if s.kind == "chunk")
    assert entry["policy_pooling"] == {ex.name: "pool" for ex in pkg.exits}
    assert {p.name: p.read_bytes() for p in (root / "onnx").iterdir()} == before
    built = Package.load(root)  # the engine graphs are checksummed package files
    assert all(f"engines/orin-fp32/{ex.segment}.onnx" in built.manifest["files"] for ex in built.exits)


def test_a_build_from_prepared_graphs_in_the_other_form_says_what_to_run(shift_pkg, tmp_path):
    from mesc.calibration.precision import prepare
    from mesc.engines.build import pooling_notes
    from mesc.engines.targets import plan_build
    from mesc.exporters.policy.pooling import package_poolings

    root = tmp_path / "pkg"
    shutil.copytree(shift_pkg.root, root)
    prepare(root, ("fp16",))
    pkg = Package.load(root)
    plan = plan_build("orin", "fp16", "10.3")
    notes = pooling_notes(pkg, plan, package_poolings(pkg, "auto", "orin"))
    assert len(notes) == 1 and "prepared fp16 graphs compute the policy's windows with 'shift', not 'pool'" in notes[0]
    assert f"'mesc prepare {root} --precision fp16 --target orin'" in notes[0]
    assert pooling_notes(pkg, plan, package_poolings(pkg, "shift", "orin")) == []
