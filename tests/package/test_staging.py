"""Directory outputs appear whole or not at all, also when the run is stopped by SIGTERM."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mesc.errors import MescError
from mesc.package.staging import staging_dir

STAGE_AND_WAIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mesc.package import Package
    from mesc.package.staging import staging_dir
    kind, target = sys.argv[1], Path(sys.argv[2])
    if kind == "dir":
        stage = staging_dir(target, force=True)
    else:
        pkg = Package.load(target, verify_checksums=False)
        stage = pkg.staging("onnx")
    with stage as tmp:
        (tmp / "half.txt").write_text("half")
        print("staged", flush=True)
        time.sleep(60)
""")


def _stage_then_terminate(kind, target):
    proc = subprocess.Popen([sys.executable, "-c", STAGE_AND_WAIT, kind, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "staged", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc


def test_sigterm_leaves_no_staging_and_keeps_the_old_directory(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = _stage_then_terminate("dir", out)
    assert proc.returncode != 0
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert sorted(os.listdir(out)) == ["old.txt"]


def test_sigterm_inside_a_package_leaves_no_staging(toy_package, tmp_path):
    import shutil

    pkg = shutil.copytree(toy_package, tmp_path / "pkg")
    before = sorted(os.listdir(pkg)), sorted(os.listdir(pkg / "onnx"))
    _stage_then_terminate("package", pkg)
    assert (sorted(os.listdir(pkg)), sorted(os.listdir(pkg / "onnx"))) == before


def test_sigterm_handler_is_restored():
    from mesc.package.signals import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failed_block_keeps_the_old_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staging_dir(out, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["out"] and sorted(os.listdir(out)) == ["old.txt"]
    with staging_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["out"] and sorted(os.listdir(out)) == ["new.txt"]
    with pytest.raises(MescError, match="already exists"):
        with staging_dir(out):
            pass
