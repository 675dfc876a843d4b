"""A normal (non-editable) install holds every subpackage, the demo checkpoint and a working `mesc`.

An editable install imports from the source tree, so it cannot catch a subpackage the build leaves
out; this test builds the wheel from a clean copy of the tree, installs it apart from the editable
install, and imports from there.
"""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a build must never pick up from the worktree (stale build/lib would hide a missing package)
NOT_SOURCE = (".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def _source_packages() -> list[str]:
    """Every folder with an __init__.py under each root setup.cfg maps, as a dotted name."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    found = []
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, folder = (part.strip() for part in line.split("="))
        for here, dirs, files in os.walk(ROOT / folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                rel = Path(here).relative_to(ROOT / folder).parts
                found.append(".".join((name, *rel)))
    return sorted(set(found))


@pytest.mark.slow
def test_wheel_installs_every_subpackage(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(wheels), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("mesc-*.whl")
    assert "mesc/models/demo.pt" in zipfile.ZipFile(wheel).namelist()
    # pure Python: one wheel for x86-64 and a Jetson's aarch64 alike (README: On a Jetson)
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith((".so", ".pyd", ".dylib", ".c", ".pyx"))]

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, text=True)
    # the installed copy comes first on sys.path; cwd is away from the source tree
    env = {**os.environ, "PYTHONPATH": str(site)}
    packages = _source_packages()
    assert {"mesc", "mesc.cli", "mesc.exporters", "mesc.runtime"} <= set(packages)
    probe = ("import importlib, sys\n"
             "for name in sys.argv[1:]:\n"
             "    print(name, importlib.import_module(name).__file__)\n")
    res = subprocess.run([sys.executable, "-c", probe, *packages], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    for line in res.stdout.splitlines():
        name, path = line.split(" ", 1)
        assert Path(path).is_relative_to(site), f"{name} imported from {path}, not from the wheel"

    res = subprocess.run([str(site / "bin" / "mesc"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0 and "calibrate" in res.stdout, res.stderr[-2000:]
