"""Concurrent commands on one package keep each other's manifest writes (locked read, merge,
atomic write) and refuse a result computed from something that changed meanwhile."""

import json
import multiprocessing
import shutil

import pytest

from mesc.errors import PackageError
from mesc.package import MANIFEST, Package


@pytest.fixture
def pkg_dir(toy_package, tmp_path):
    return shutil.copytree(toy_package, tmp_path / "pkg")


def _on_disk(d):
    return json.loads((d / MANIFEST).read_text())


def test_both_writers_keep_their_changes(pkg_dir):
    bench, calibrate = Package.load(pkg_dir), Package.load(pkg_dir)
    bench.manifest.setdefault("latency", {})["onnxruntime/cpu"] = {"chunk0": 1.5}
    calibrate.set_policy("exit0", th_pix=0.7, th_img=0.6)
    bench.save()
    calibrate.save()
    m = _on_disk(pkg_dir)
    assert m["latency"]["onnxruntime/cpu"] == {"chunk0": 1.5}
    assert m["exits"][0]["policy"]["th_pix"] == 0.7 and m["exits"][0]["policy"]["th_img"] == 0.6
    assert calibrate.manifest == m  # the saved object now holds the merged manifest
    calibrate.set_policy("exit1", th_img=0.5)  # and a second save merges from there
    calibrate.save()
    assert _on_disk(pkg_dir)["latency"] == m["latency"]


def test_a_conflicting_change_is_refused(pkg_dir):
    a, b = Package.load(pkg_dir), Package.load(pkg_dir)
    a.set_policy("exit0", th_img=0.6)
    b.set_policy("exit0", th_img=0.7)
    a.save()
    with pytest.raises(PackageError, match=r"exits\[0\].policy.th_img was changed by another command"):
        b.save()
    assert _on_disk(pkg_dir)["exits"][0]["policy"]["th_img"] == 0.6


def test_a_changed_dependency_is_refused(pkg_dir):
    bench, calibrate = Package.load(pkg_dir), Package.load(pkg_dir)
    bench.manifest["latency"] = {"onnxruntime/cpu": {"chunk0": 1.5}}
    bench.save()
    calibrate = Package.load(pkg_dir)  # calibrates from the recorded latency
    again = Package.load(pkg_dir)
    again.manifest["latency"]["onnxruntime/cpu"]["chunk0"] = 2.5
    again.save()
    calibrate.set_policy("exit0", th_img=0.6)
    with pytest.raises(PackageError, match=r"latency.onnxruntime/cpu was changed .* may be stale"):
        calibrate.save(depends_on=[("latency", "onnxruntime/cpu")])
    calibrate.save()  # without the dependency the two changes do not touch


def test_changed_segments_refuse_every_writer(pkg_dir):
    a, b = Package.load(pkg_dir), Package.load(pkg_dir)
    a.manifest["segments"][0]["flops"] = 1
    a.save()
    b.manifest["latency"] = {"x": {"chunk0": 1.0}}
    with pytest.raises(PackageError, match="segments was changed"):
        b.save()


def test_install_dir_merges_and_refuses_like_save(pkg_dir):
    a, b = Package.load(pkg_dir), Package.load(pkg_dir)
    b.set_policy("exit1", th_img=0.4)
    b.save()
    with a.staging("extra/one") as tmp:
        (tmp / "x.txt").write_text("x")
        a.install_dir(tmp, "extra/one", update=lambda m: m.setdefault("engines", {}).update(
            host={"fp32": {"dir": "extra/one", "segments": {}}}))
    m = _on_disk(pkg_dir)
    assert "extra/one/x.txt" in m["files"] and m["engines"]["host"]["fp32"]["dir"] == "extra/one"
    assert m["exits"][1]["policy"]["th_img"] == 0.4
    # a concurrent install of the same directory: the later one is refused, its staging removed
    c, d = Package.load(pkg_dir), Package.load(pkg_dir)
    _install_text(c, "c")
    with pytest.raises(PackageError, match=r"files.extra/one/x.txt was changed"):
        _install_text(d, "d")
    assert (pkg_dir / "extra" / "one" / "x.txt").read_text() == "c"
    assert not [p for p in (pkg_dir / "extra").iterdir() if p.name.startswith(".")]


def _install_text(pkg, text):
    with pkg.staging("extra/one") as tmp:
        (tmp / "x.txt").write_text(text)
        pkg.install_dir(tmp, "extra/one")


def _writer(pkg_dir, n, which):
    for i in range(n):
        pkg = Package.load(pkg_dir, verify_checksums=False)
        if which == "latency":
            pkg.manifest.setdefault("latency", {})[f"bench/{i}"] = {"chunk0": float(i)}
        else:
            pkg.manifest.setdefault("calibration_runs", []).append(i)
        pkg.save()


def test_two_processes_lose_nothing(pkg_dir):
    n = 40
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(pkg_dir, n, w)) for w in ("latency", "calibration")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    m = _on_disk(pkg_dir)
    assert sorted(m["latency"]) == sorted(f"bench/{i}" for i in range(n))
    assert m["calibration_runs"] == list(range(n))
    Package.load(pkg_dir)


def test_a_held_lock_times_out_clearly(pkg_dir, monkeypatch):
    from mesc.package.locking import package_lock

    monkeypatch.setattr("mesc.package.locking.LOCK_TIMEOUT_S", 0.1)
    pkg = Package.load(pkg_dir)
    with package_lock(pkg_dir):
        with pytest.raises(PackageError, match="another mesc command has held the package's lock"):
            pkg.save()
