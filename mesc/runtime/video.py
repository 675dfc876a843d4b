"""Frames in and out of video: files (mp4, avi, mkv, ...) and live sources (a V4L2 device,
``rtsp://``, ``http(s)://``), read with PyAV, the ``video`` extra.

Why PyAV: its wheels bundle FFmpeg for Linux x86-64 and aarch64 (Jetson) and macOS, with
demuxers for files and network streams, V4L2 capture, and H.264 encoders (libx264 and
openh264), so one pip install both reads what cameras send and writes an overlay video that
every browser and player opens. OpenCV's pip wheels read video too, but cannot write H.264
(their FFmpeg is built without an H.264 encoder for licence reasons), and they pull in a large
GUI/imaging library mesc does not otherwise need.

Nothing here imports ``av`` at module level: ``import mesc``, ``mesc --help`` and the runtime
stay light, and a missing extra is an error naming it (:func:`require_av`).

Hardware decoding on a Jetson goes through GStreamer (nvv4l2decoder), which no pip wheel
carries; there, decode with GStreamer and hand the frames to the pipeline as arrays (see
docs/examples/camera_app.py and README "Video and cameras"): :class:`Prefetch` takes any
iterator of :class:`Frame`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from mesc.runtime.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".ts")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
# the H.264 encoders PyAV's wheels may carry, in order of preference; MPEG-4 Part 2 is the
# named fallback (FFmpeg's own encoder: always there, plays in VLC and ffplay, not in browsers)
H264_ENCODERS = ("libx264", "libopenh264", "h264")
FALLBACK_ENCODER = "mpeg4"


def require_av():
    """``av`` (PyAV), or an error naming the extra that installs it."""
    from mesc.lazy import require

    return require("av", extra="video", purpose="video files and camera streams")


def is_live(source: str) -> bool:
    """A camera or network stream: frames arrive in real time, whatever mesc does."""
    s = str(source)
    return s.lower().startswith(LIVE_PREFIXES) or s.startswith("/dev/video")


def is_video(source) -> bool:
    """Whether ``mesc run`` reads ``source`` as video (by suffix, or as a live source)."""
    return is_live(str(source)) or Path(str(source)).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Frame:
    index: int  # position in the source's frame sequence (before --every's stride)
    time: float  # seconds from the start of the stream
    image: np.ndarray  # H x W x 3 uint8 RGB, already at the size the caller asked for


def fit_frame(image: np.ndarray, size, resize: bool, where: str) -> np.ndarray:
    """``image`` at ``size`` (H, W): resized (bilinear) with ``resize``, else refused naming
    both sizes."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    if not resize:
        raise InputError(f"{where} is {image.shape[1]}x{image.shape[0]} (WxH) but the package takes {w}x{h}; "
                         f"pass --resize to resize it")
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


class VideoSource:
    """Decoded frames of a file or live source, with reconnects for live ones.

    ``every``: keep every K-th frame (the others are decoded, as codecs need, and skipped).
    ``retries``: for a live source, how many times a dropped stream is reopened (``retry_wait``
    seconds apart, each with a message on ``echo``) before the source ends cleanly; the count
    starts afresh once a stream has run for :attr:`RETRY_RESET` seconds (a camera that drops
    once an hour keeps running; a source that ends at once, e.g. a file served over HTTP, is not
    replayed forever).
    ``size``/``resize``: frames of another size are resized or refused (:func:`fit_frame`).
    ``opener``: ``source -> container`` (tests pass fakes; default :func:`av.open`).
    """

    RETRY_RESET = 60.0

    def __init__(self, source, size=None, resize: bool = False, every: int = 1, retries: int = 3,
                 retry_wait: float = 1.0, echo: Callable[[str], None] = print, opener=None, timeout: float = 10.0):
        self.source = str(source)
        self.live = is_live(self.source)
        self.size, self.resize, self.every = size, resize, max(1, int(every))
        self.retries, self.retry_wait, self.echo = retries, retry_wait, echo
        self.timeout = timeout
        self._opener = opener
        self.reconnects = 0
        self.fps: Optional[float] = None
        self.codec: Optional[str] = None
        self._stop = threading.Event()
        self._container = None
        self._opened_at = None
        self._open()  # a file that cannot be read fails here, before any frame is asked for

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> None:
        av = require_av() if self._opener is None else None
        src = self.source
        if not self.live and not os.path.exists(src):
            raise InputError(f"{src}: no such file")
        try:
            if self._opener is not None:
                container = self._opener(src)
            else:
                kwargs = {"timeout": (self.timeout, self.timeout)} if self.live else {}
                if src.startswith("/dev/video"):
                    kwargs["format"] = "v4l2"
                if src.lower().startswith(("rtsp://", "rtsps://")):
                    kwargs["options"] = {"rtsp_transport": "tcp"}  # UDP loses packets behind NAT and Wi-Fi
                container = av.open(src, **kwargs)
        except InputError:
            raise
        except Exception as err:  # FFmpeg's errors (av.FFmpegError subclasses) and OSError
            raise InputError(f"{src}: cannot open the video ({_reason(err)})") from None
        streams = getattr(container.streams, "video", ())
        if not streams:
            container.close()
            raise InputError(f"{src}: holds no video stream")
        stream = streams[0]
        ctx = getattr(stream, "codec_context", None)
        self.codec = getattr(ctx, "name", None) or getattr(getattr(stream, "codec", None), "name", None)
        if ctx is None or not _can_decode(self.codec, self._opener is None):
            container.close()
            raise InputError(f"{src}: the video's codec {self.codec or '(unknown)'} is not one this PyAV build's "
                             f"FFmpeg can decode; re-encode it (e.g. to H.264) or install a PyAV that has it")
        try:
            stream.thread_type = "AUTO"  # FFmpeg's own slice/frame threads inside the decoder
        except Exception:  # fakes, and old PyAV without the attribute
            pass
        rate = getattr(stream, "average_rate", None) or getattr(stream, "guessed_rate", None)
        self.fps = float(rate) if rate else self.fps
        self._container, self._stream = container, stream
        self._opened_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._close_container()

    def _close_container(self) -> None:
        self._opened_at = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None

    def stop(self) -> None:
        """Ask :meth:`frames` to end after the frame it is on (any thread)."""
        self._stop.set()

    # -- reading ------------------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        """Every ``every``-th frame until the end of a file, :meth:`stop`, or a live source
        lost after its retries (ended with a message, not an error)."""
        index = 0
        failures = 0
        err = None  # why the last reopen failed
        while not self._stop.is_set():
            if self._container is not None:
                err = None
                try:
                    for frame in self._container.decode(self._stream):
                        if self._stop.is_set():
                            return
                        if index % self.every == 0:
                            t = frame.time if frame.time is not None else index / (self.fps or 30.0)
                            yield Frame(index, float(t), self._image(frame, index))
                        index += 1
                except InputError:
                    raise
                except Exception as exc:  # the stream broke (network, device unplugged, corrupt data)
                    err = exc
                if not self.live:
                    if err is not None:
                        raise InputError(f"{self.source}: cannot decode frame {index} ({_reason(err)})") from None
                    return
                if self._stop.is_set():
                    return
            # a live source that ends or breaks has dropped: reopen it a few times, then stop
            if self._opened_at is not None and time.monotonic() - self._opened_at >= self.RETRY_RESET:
                failures = 0  # it ran long enough since the last reconnect: a new drop
            failures += 1
            why = _reason(err) if err is not None else "the stream ended"
            if failures > self.retries:
                self.echo(f"{self.source}: stream lost ({why}); gave up after {self.retries} retries, stopping")
                return
            self.echo(f"{self.source}: stream dropped ({why}); retrying ({failures}/{self.retries})")
            self._close_container()
            if self._stop.wait(self.retry_wait):
                return
            try:
                self._open()
                self.reconnects += 1
            except InputError as exc:
                err = exc

    def _image(self, frame, index: int) -> np.ndarray:
        img = frame.to_ndarray(format="rgb24")
        if self.size is not None:
            img = fit_frame(img, self.size, self.resize, f"{self.source}: frame {index}")
        return img


def _can_decode(codec: Optional[str], check: bool) -> bool:
    if not check:
        return True
    if not codec:
        return False
    import av

    try:
        av.codec.Codec(codec, "r")
    except Exception:
        return False
    return True


def _reason(err) -> str:
    """FFmpeg's message without PyAV's errno prefix."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(text).strip()


class Prefetch:
    """Frames from ``frames`` (an iterator of :class:`Frame`), decoded on a thread of their
    own so that decoding the next frame overlaps running the pipeline on this one.

    ``latest=False`` (files): a short queue, the decoder waits for the consumer, no frame is
    lost. ``latest=True`` (live sources): one slot; a frame that arrives while the previous one
    is still waiting replaces it, and :attr:`dropped` counts the frames replaced, so the pipeline
    always works on the newest frame and latency does not grow.
    An error in the decoder thread is raised in the consumer, at the frame where it happened.
    """

    _END = object()

    def __init__(self, frames: Iterator[Frame], latest: bool = False, depth: int = 4, on_stop=None):
        self._frames = frames
        self.latest = latest
        self.dropped = 0
        self._on_stop = on_stop
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: list = []  # latest mode: at most one item
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread = threading.Thread(target=self._produce, name="mesc-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        if self.latest:
            with self._cond:
                if self._slot and isinstance(self._slot[0], Frame) and isinstance(item, Frame):
                    self.dropped += 1
                    self._slot[0] = item
                else:
                    self._slot.append(item)
                self._cond.notify()
            return
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            for fr in self._frames:
                if self._stop.is_set():
                    break
                self._put(fr)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)
        self._put(self._END)

    def _get(self):
        if not self.latest:
            return self._queue.get()
        with self._cond:
            while not self._slot:
                self._cond.wait()
            return self._slot.pop(0)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the decoder thread and wait for it (it finishes the frame it is decoding)."""
        self._stop.set()
        if self._on_stop is not None:
            self._on_stop()
        while self._thread.is_alive():
            try:  # unblock a producer waiting for room
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encoder(prefer=H264_ENCODERS, fallback: str = FALLBACK_ENCODER) -> str:
    """The first encoder of ``prefer`` this PyAV build has, else ``fallback``."""
    av = require_av()
    available = set(av.codecs_available)
    for name in prefer:
        if name in available:
            try:
                if av.codec.Codec(name, "w"):
                    return name
            except Exception:
                continue
    return fallback


class VideoWriter:
    """An MP4 file of RGB frames at ``fps``: H.264 where this PyAV has an encoder for it,
    else MPEG-4 Part 2 (:data:`FALLBACK_ENCODER`), named in :attr:`codec`. Odd sizes are
    padded by one pixel (4:2:0 chroma needs even sides)."""

    def __init__(self, path, fps: float, codec: Optional[str] = None):
        from fractions import Fraction

        av = require_av()
        self.path = Path(path)
        self.codec = codec or encoder()
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
        self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.pix_fmt = "yuv420p"
        self._av = av
        self._opened = False
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if h % 2 or w % 2:
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if not self._opened:
            self._stream.height, self._stream.width = image.shape[:2]
            self._opened = True
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._opened:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None


def write_video(path, frames, fps: float = 30.0, codec: Optional[str] = None) -> str:
    """Write ``frames`` (H x W x 3 uint8 arrays) to ``path``; returns the codec used (tests and
    benchmarks make their synthetic videos with it)."""
    w = VideoWriter(path, fps, codec)
    try:
        for f in frames:
            w.write(f)
    finally:
        w.close()
    return w.codec


def frames_from_arrays(arrays, fps: float = 30.0, start: int = 0) -> Iterator[Frame]:
    """Frames from H x W x 3 arrays (GStreamer's appsink, a camera SDK): what :class:`Prefetch`
    and :func:`mesc.runtime.video_run.run_frames` take."""
    for k, a in enumerate(arrays, start):
        yield Frame(k, k / fps, a)


__all__ = ["Frame", "Prefetch", "VideoSource", "VideoWriter", "encoder", "fit_frame", "frames_from_arrays",
           "is_live", "is_video", "require_av", "write_video", "LIVE_PREFIXES", "VIDEO_SUFFIXES"]
