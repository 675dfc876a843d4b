"""`import mesc`, `mesc --help` and the runtime never import torch or tensorrt (nor PyAV, the
video extra, until a video is read)."""

import subprocess
import sys

import pytest

PROBE = "import sys; {stmt}; heavy = [m for m in {heavy!r} if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
HELP = ("", "export", "run", "bench", "calibrate", "eval", "build", "prepare", "inspect", "synth-data", "train",
        "selftest", "serve", "client", "data")


@pytest.mark.parametrize("stmt", [
    "import mesc",
    "import mesc.package, mesc.package.describe, mesc.errors",
    "import mesc.runtime, mesc.policy, mesc.datasets.synthetic, mesc.datasets.images, mesc.evaluation.metrics",
    "import mesc.evaluation.scoring",
    "import mesc.runtime.video, mesc.runtime.video_run, mesc.runtime.overlay, mesc.runtime.files",
])
def test_no_heavy_imports(stmt):
    res = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt, heavy=("torch", "tensorrt", "av"))],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"{stmt!r} imported {res.stdout.strip()} {res.stderr[-500:]}"


@pytest.mark.parametrize("command", HELP)
def test_help_imports_no_backend(command):
    """`mesc --help` and every command's --help: no torch, no TensorRT, and no ONNX Runtime either."""
    stmt = f"from mesc.cli import cli; cli.main([{command!r}, '--help'] if {command!r} else ['--help'], standalone_mode=False)"
    res = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt, heavy=("torch", "tensorrt", "onnxruntime", "av"))],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"mesc {command} --help imported {res.stdout.strip()} {res.stderr[-500:]}"


def test_help_covers_every_command():
    # a new command must join HELP, or its --help could pull in torch unnoticed
    from mesc.cli import cli

    assert set(HELP) - {""} == set(cli.commands)


def test_missing_extra_names_the_extra():
    from mesc.errors import MissingDependencyError
    from mesc.lazy import require

    with pytest.raises(MissingDependencyError, match=r"pip install 'mesc\[trt\]'"):
        require("tensorrt_definitely_not_here", extra="trt")


def test_video_without_the_extra_names_it(tmp_path):
    """Without PyAV, a video input is one line naming the extra (av hidden from the import system)."""
    stmt = ("import sys; sys.modules['av'] = None; from mesc.runtime.video import VideoSource; "
            "VideoSource(sys.argv[1])")
    (tmp_path / "clip.mp4").write_bytes(b"")
    res = subprocess.run([sys.executable, "-c", stmt, str(tmp_path / "clip.mp4")], capture_output=True, text=True)
    assert res.returncode != 0 and "pip install 'mesc[video]'" in res.stderr
