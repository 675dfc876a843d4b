"""docs/examples/camera_app.py: a capture thread feeding one shared pipeline, results on a queue,
run on a synthetic video for a few seconds; every frame gets a result, in order."""

import importlib.util
import queue
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "camera_app.py"
FRAMES, FPS = 90, 30  # three seconds


def _load():
    spec = importlib.util.spec_from_file_location("camera_app", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    from mesc.datasets.synthetic import video_frames
    from mesc.runtime.video import write_video

    path = tmp_path_factory.mktemp("cam") / "scene.mp4"
    write_video(path, video_frames(FRAMES, (32, 64), seed=1), fps=FPS)
    return path


def _drain(app, timeout=60.0):
    got, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            item = app.results.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is None:
            return got
        got.append(item)
    raise AssertionError(f"no end of results after {timeout} s ({len(got)} results)")


def test_every_frame_of_a_file_gets_a_result_in_order(pkg_host, synthetic_video):
    import mesc

    cam = _load()
    with mesc.load(pkg_host) as pipe:
        frames, live = cam.capture_frames(synthetic_video, (32, 64))
        assert live is False
        app = cam.CameraApp(pipe, frames, latest=False).start()
        got = _drain(app)
        app.stop()
    assert [g[0] for g in got] == list(range(FRAMES))
    assert [g[1] for g in got] == pytest.approx([k / FPS for k in range(FRAMES)], abs=1e-3)
    assert {g[2] for g in got} <= set(pipe.exit_names) and all(g[4] > 0 for g in got)
    assert app.dropped == 0


def test_live_source_keeps_the_newest_frames(pkg_host):
    import mesc
    from mesc.runtime.video import Frame

    cam = _load()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)

    def fast_camera(n=200):
        for k in range(n):
            time.sleep(0.0005)
            yield Frame(k, k / 2000, img)

    with mesc.load(pkg_host) as pipe:
        app = cam.CameraApp(pipe, fast_camera(), latest=True).start()
        got = _drain(app)
        app.stop()
    idx = [g[0] for g in got]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert len(got) + app.dropped == 200 and idx[-1] == 199


def test_script_runs_for_its_seconds(pkg_host, synthetic_video):
    res = subprocess.run([sys.executable, str(EXAMPLE), str(pkg_host), str(synthetic_video), "--seconds", "20"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == f"{FRAMES} frames, 0 dropped"
    assert lines[0].startswith("frame 0 t=0.000s exit") and lines[-2].startswith(f"frame {FRAMES - 1} ")
