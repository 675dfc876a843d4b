"""`mesc run` on video files and live sources: frames read, one CSV row per frame in order,
--every/--max-frames, sizes, overlay video, the latest-frame policy, retries, Ctrl-C, and
the one-line errors (unreadable file, missing codec, another size)."""

import csv
import functools
import http.server
import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from mesc.cli import cli

av = pytest.importorskip("av")

from mesc.runtime.errors import InputError  # noqa: E402
from mesc.runtime.video import Frame, Prefetch, VideoSource, write_video  # noqa: E402
from mesc.runtime.video_run import StatusLine, StreamSummary, run_video  # noqa: E402

FRAMES, FPS = 12, 10


def _frames(n, h=32, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # frame k carries k in a bright bar: codecs keep it, so decoded order is checkable
    for k in range(n):
        f = np.roll(base, k, axis=1).copy()
        yield f


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, _frames(FRAMES), fps=FPS)
    return path


def _run(*args):
    res = CliRunner().invoke(cli, ["run", *map(str, args)])
    return res.exit_code, res.output


def _rows(out):
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_video_file_one_row_per_frame_and_overlay(pkg_host, video, tmp_path):
    out = tmp_path / "out"
    code, text = _run(pkg_host, video, "-o", out, "--overlay", "--th-pix", "0.5")
    assert code == 0, text
    assert f"{FRAMES} frame(s) segmented" in text and "frames/s" in text
    rows = _rows(out)
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert [float(r["time_s"]) for r in rows] == pytest.approx([k / FPS for k in range(FRAMES)], abs=1e-3)
    assert {r["exit"] for r in rows} <= {"exit0", "exit1", "exit2"}
    assert all(float(r["latency_ms"]) > 0 and 0 <= float(r["confidence"] or 0) <= 1 for r in rows)
    data = json.loads((out / "results.json").read_text())
    assert data["summary"]["frames"] == FRAMES and sum(data["summary"]["exits"].values()) == FRAMES
    assert data["codec"] == "h264" and data["fps"] == FPS
    # the overlay video: H.264 in MP4 at the input's rate, every frame
    with av.open(str(out / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and float(s.average_rate) == FPS
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == FRAMES and decoded[0].shape == (32, 64, 3)
    # --force replaces a previous video run (its overlay.mp4 is recognised as mesc's)
    code, text = _run(pkg_host, video, "-o", out, "--max-frames", "2", "--force")
    assert code == 0, text
    assert len(_rows(out)) == 2 and not (out / "overlay.mp4").exists()


@pytest.mark.parametrize("kw, named", [({"every": 0}, "--every must be a whole number >= 1, got 0"),
                                        ({"max_frames": -2}, r"--max-frames must be a whole number >= 1 \(or None\)"),
                                        ({"retries": -1}, "--retries must be a whole number from 0 to 100"),
                                        ({"status_every": float("nan")}, "--status-every must be in")])
def test_run_video_checks_its_ranges_before_reading(pkg_host, tmp_path, kw, named):
    import mesc
    from mesc.errors import MescError

    with mesc.load(pkg_host) as pipe, pytest.raises(MescError, match=named):
        run_video(pipe, tmp_path / "never-read.mp4", tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


def test_every_and_max_frames(pkg_host, video, tmp_path):
    out = tmp_path / "out"
    code, text = _run(pkg_host, video, "-o", out, "--every", "3", "--max-frames", "3")
    assert code == 0, text
    assert [int(r["frame"]) for r in _rows(out)] == [0, 3, 6]


@pytest.mark.parametrize("threaded", [True, False])
def test_decode_thread_on_and_off_give_the_same_rows(pkg_host, video, tmp_path, threaded):
    import mesc

    with mesc.load(pkg_host) as pipe:
        s = run_video(pipe, video, tmp_path / "o", threaded=threaded, echo=lambda m: None)
    assert s.frames == FRAMES and s.dropped == 0
    assert [int(r["frame"]) for r in _rows(tmp_path / "o")] == list(range(FRAMES))


def test_another_size_is_refused_or_resized(pkg_host, tmp_path):
    big = tmp_path / "big.mkv"
    write_video(big, _frames(4, 48, 80), fps=FPS)
    out = tmp_path / "out"
    code, text = _run(pkg_host, big, "-o", out)
    assert code != 0
    assert "frame 0 is 80x48 (WxH) but the package takes 64x32; pass --resize" in text
    assert not out.exists()  # nothing written
    code, text = _run(pkg_host, big, "-o", out, "--resize")
    assert code == 0, text
    assert len(_rows(out)) == 4


def test_unreadable_file_and_missing_codec_get_one_line(pkg_host, video, tmp_path, monkeypatch):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is no video at all" * 100)
    code, text = _run(pkg_host, bad, "-o", tmp_path / "o1")
    assert code != 0 and "broken.mp4: cannot open the video" in text
    assert len(text.strip().splitlines()) == 1
    code, text = _run(pkg_host, tmp_path / "missing.avi", "-o", tmp_path / "o2")
    assert code != 0 and "missing.avi: no such file" in text

    real = av.codec.Codec

    def no_h264(name, mode="r"):
        if name == "h264" and mode == "r":
            raise av.codec.codec.UnknownCodecError(name) if hasattr(av.codec.codec, "UnknownCodecError") \
                else ValueError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", no_h264)
    code, text = _run(pkg_host, video, "-o", tmp_path / "o3")
    assert code != 0 and "the video's codec h264 is not one this PyAV build's FFmpeg can decode" in text


def test_video_runs_alone_and_image_options_are_refused(pkg_host, video, tmp_path):
    code, text = _run(pkg_host, video, video, "-o", tmp_path / "o")
    assert code != 0 and "runs alone" in text
    code, text = _run(pkg_host, video, "-o", tmp_path / "o", "--batch", "2")
    assert code != 0 and "--batch apply to images" in text
    code, text = _run(pkg_host, video, "-o", tmp_path / "o", "--every", "0")
    assert code == 2 and "--every" in text
    code, text = _run(pkg_host, video, "-o", video.parent)  # the output would contain the input
    assert code != 0 and "contains the input INPUT" in text


# -- live sources ------------------------------------------------------------------------------

class _FakeFrame:
    def __init__(self, k, h=32, w=64):
        self.time = k / 25.0
        self._img = np.full((h, w, 3), k % 256, np.uint8)

    def to_ndarray(self, format="rgb24"):
        return self._img


class _FakeContainer:
    """A camera that sends ``n`` frames, then breaks (as a network stream that drops)."""

    def __init__(self, n, start=0):
        self.n, self.start = n, start
        ctx = type("Ctx", (), {"name": "h264"})()
        self.streams = type("S", (), {"video": [type("V", (), {"codec_context": ctx, "average_rate": 25})()]})()

    def decode(self, stream):
        for k in range(self.n):
            yield _FakeFrame(self.start + k)
        raise OSError("Connection reset by peer")

    def close(self):
        pass


def test_dropping_live_stream_is_retried_then_stops_cleanly(pkg_host, tmp_path):
    import mesc

    opened, said = [], []

    def opener(src):
        opened.append(src)
        if len(opened) > 2:  # the camera is gone for good after the first reconnect
            raise OSError("Connection refused")
        return _FakeContainer(5, start=100 * len(opened))

    with mesc.load(pkg_host) as pipe:
        s = run_video(pipe, "rtsp://camera.invalid/stream", tmp_path / "o", retries=2, retry_wait=0,
                      threaded=False, echo=said.append, opener=opener)
    assert s.frames == 10 and s.reconnects == 1
    assert said[0] == "rtsp://camera.invalid/stream: stream dropped (Connection reset by peer); retrying (1/2)"
    assert said[1] == "rtsp://camera.invalid/stream: stream dropped (Connection reset by peer); retrying (2/2)"
    assert "Connection refused" in said[2] and len(said) == 3
    assert said[-1].startswith("rtsp://camera.invalid/stream: stream lost") and "gave up after 2 retries" in said[-1]
    rows = _rows(tmp_path / "o")
    # frame indices run on across the reconnect
    assert [int(r["frame"]) for r in rows] == list(range(10))
    assert json.loads((tmp_path / "o" / "results.json").read_text())["live"] is True


def test_latest_frame_policy_drops_and_counts():
    import time

    produced = 50

    def camera():
        for k in range(produced):
            time.sleep(0.002)
            yield Frame(k, k / 500, np.zeros((1, 1, 3), np.uint8))

    got = []
    with Prefetch(camera(), latest=True) as pre:
        for fr in pre:
            got.append(fr.index)
            time.sleep(0.02)  # inference slower than the camera
    assert pre.dropped > 0 and len(got) + pre.dropped == produced
    assert got == sorted(got) and got[-1] == produced - 1  # the newest frame always wins


def test_ctrl_c_ends_cleanly_with_results_so_far(pkg_host, video, tmp_path):
    import mesc

    class Interrupting:
        """The pipeline, with Ctrl-C pressed during the fourth frame."""

        def __init__(self, pipe):
            self.pipe, self.calls = pipe, 0

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def __call__(self, image, exit=None):
            self.calls += 1
            if self.calls == 4:
                raise KeyboardInterrupt
            return self.pipe(image, exit=exit)

    with mesc.load(pkg_host) as pipe:
        s = run_video(Interrupting(pipe), video, tmp_path / "o", overlay=True, echo=lambda m: None)
    assert s.interrupted and s.frames == 3
    assert [int(r["frame"]) for r in _rows(tmp_path / "o")] == [0, 1, 2]
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["summary"]["interrupted"] is True and data["summary"]["frames"] == 3
    with av.open(str(tmp_path / "o" / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3


@pytest.fixture()
def http_server(video):
    """The test video served over HTTP on loopback."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    server.shutdown()
    server.server_close()


def test_http_stream_on_loopback(pkg_host, http_server, tmp_path):
    out = tmp_path / "out"
    code, text = _run(pkg_host, http_server, "-o", out, "--retries", "1")
    assert code == 0, text
    # the served file ends, which for a live source is a drop: reopened once, then given up
    assert "stream dropped (the stream ended); retrying (1/1)" in text
    assert "gave up after 1 retries, stopping" in text
    data = json.loads((out / "results.json").read_text())
    s = data["summary"]
    assert data["live"] is True and s["reconnects"] == 1
    # every decoded frame was segmented or dropped by the latest-frame policy, twice over
    assert s["frames"] + s["dropped"] == 2 * FRAMES and s["frames"] == len(_rows(out)) >= 2


def test_status_line_log_and_terminal():
    import io

    t = [0.0]
    log = io.StringIO()
    s = StreamSummary(["exit0", "exit1"], frames=4, latency_ms_sum=8.0, seconds=2.0)
    s.counts.update({"exit0": 3, "exit1": 1})
    line = StatusLine(every=5.0, stream=log, tty=False, clock=lambda: t[0])
    for t[0] in (1.0, 4.0, 6.0, 7.0, 11.5):
        line.update(s)
    assert log.getvalue().splitlines() == ["4 frames | 2.0 frames/s | exit0 75% exit1 25% | mean latency 2.0 ms"] * 2
    term = io.StringIO()
    t[0] = 0.0
    line = StatusLine(every=5.0, stream=term, tty=True, clock=lambda: t[0])
    for t[0] in (0.6, 1.2):
        line.update(s)
    line.close()
    assert term.getvalue().count("\r") == 2 and term.getvalue().endswith("\n")


def test_fit_frame_refuses_naming_both_sizes():
    from mesc.runtime.video import fit_frame

    with pytest.raises(InputError, match=r"x: frame is 5x4 \(WxH\) but the package takes 8x6"):
        fit_frame(np.zeros((4, 5, 3), np.uint8), (6, 8), False, "x: frame")
    assert fit_frame(np.zeros((4, 5, 3), np.uint8), (6, 8), True, "x").shape == (6, 8, 3)


def test_source_size_check_happens_on_decode(video):
    src = VideoSource(video, size=(16, 16))
    with pytest.raises(InputError, match="frame 0 is 64x32"):
        next(src.frames())
    src.close()


# An MPEG-TS live stream pushed over TCP on loopback in real time (60 frames/s), from another
# process: PyAV's listening open holds the GIL, so a thread here would stall the reader.
TCP_SERVER = """
import sys, time, numpy as np, av
port, n = int(sys.argv[1]), int(sys.argv[2])
out = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
st = out.add_stream("libx264", rate=60)
st.width, st.height, st.pix_fmt, st.options = 64, 32, "yuv420p", {"tune": "zerolatency"}
for k in range(n):
    frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), (k * 4) % 256, np.uint8), format="rgb24")
    for p in st.encode(frame):
        out.mux(p)
    time.sleep(1 / 60)
for p in st.encode():
    out.mux(p)
out.close()
"""


def test_live_tcp_stream_on_loopback(pkg_host, tmp_path):
    import socket
    import subprocess
    import sys
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    sent = 60
    server = subprocess.Popen([sys.executable, "-c", TCP_SERVER, str(port), str(sent)])
    try:
        time.sleep(1.0)  # the server listening
        out = tmp_path / "out"
        code, text = _run(pkg_host, f"tcp://127.0.0.1:{port}", "-o", out, "--retries", "0", "--overlay")
    finally:
        server.wait(timeout=60)
    assert code == 0, text
    assert "stream lost (the stream ended); gave up after 0 retries, stopping" in text
    s = json.loads((out / "results.json").read_text())["summary"]
    idx = [int(r["frame"]) for r in _rows(out)]
    # each frame sent was segmented or dropped for a newer one; the newest always wins
    assert len(idx) == s["frames"] and s["frames"] + s["dropped"] == sent
    assert idx == sorted(set(idx)) and idx[-1] == sent - 1
    with av.open(str(out / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == s["frames"]


def test_a_stream_that_changes_size_keeps_the_frames_before(pkg_host, tmp_path):
    import mesc

    class Resizing(_FakeContainer):
        def decode(self, stream):
            for k in range(6):
                yield _FakeFrame(k, *((32, 64) if k < 4 else (48, 80)))

    said = []
    with mesc.load(pkg_host) as pipe:
        s = run_video(pipe, "rtsp://camera.invalid/s", tmp_path / "o", threaded=True, echo=said.append,
                      opener=lambda src: Resizing(0))
    # live: the latest-frame policy may drop some of the four good frames, never the newest
    assert s.frames + s.dropped == 4 and "frame 4 is 80x48 (WxH) but the package takes 64x32" in s.error
    assert said == [f"stopped: {s.error}"]
    idx = [int(r["frame"]) for r in _rows(tmp_path / "o")]
    assert len(idx) == s.frames and idx[-1] == 3
    assert json.loads((tmp_path / "o" / "results.json").read_text())["summary"]["error"] == s.error
