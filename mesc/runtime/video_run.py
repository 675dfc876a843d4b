"""Run a pipeline over a video file or a live source (``mesc run PKG VIDEO``): a results table
with one row per frame, a status line while it runs, and optionally an overlay video.

The loop is :func:`run_frames`, which takes any iterator of :class:`~mesc.runtime.video.Frame`
(frames from PyAV here; from GStreamer or a camera SDK in an application): decode happens on
its own thread (:class:`~mesc.runtime.video.Prefetch`), inference on the calling one, so the
two overlap. Ctrl-C ends the run after the frame in flight; the results so far are written.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

from mesc.package.outputs import RUN_MARKER
from mesc.package.staging import write_json_atomic
from mesc.runtime.errors import InputError
from mesc.runtime.video import Prefetch, VideoSource, VideoWriter

CSV_HEADER = ["frame", "time_s", "exit", "exit_index", "confidence", "latency_ms"]
OVERLAY_VIDEO = "overlay.mp4"


@dataclasses.dataclass
class StreamSummary:
    exit_names: list
    frames: int = 0  # frames segmented
    dropped: int = 0  # live sources: frames replaced by a newer one before the pipeline took them
    counts: Counter = dataclasses.field(default_factory=Counter)  # exit name -> frames
    latency_ms_sum: float = 0.0
    seconds: float = 0.0  # wall clock from the first frame asked for to the last result
    interrupted: bool = False  # Ctrl-C
    reconnects: int = 0
    overlay: Optional[str] = None  # file name of the overlay video, and its codec
    overlay_codec: Optional[str] = None
    error: Optional[str] = None  # what stopped the run after some frames (e.g. a frame of another size)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency_ms(self) -> Optional[float]:
        return self.latency_ms_sum / self.frames if self.frames else None

    @property
    def shares(self) -> dict:
        """Exit name -> fraction of the frames that left there."""
        return {n: (self.counts.get(n, 0) / self.frames if self.frames else 0.0) for n in self.exit_names}

    def status(self) -> str:
        """The one-line status: frames/s, exit shares, mean latency (and drops where any)."""
        shares = " ".join(f"{n} {100 * s:.0f}%" for n, s in self.shares.items())
        lat = "-" if self.mean_latency_ms is None else f"{self.mean_latency_ms:.1f} ms"
        drop = f" | dropped {self.dropped}" if self.dropped else ""
        return f"{self.frames} frames | {self.fps:.1f} frames/s | {shares} | mean latency {lat}{drop}"

    def format(self) -> str:
        how = " (interrupted)" if self.interrupted else ""
        lines = [f"{self.frames} frame(s) segmented{how} in {self.seconds:.1f} s: {self.fps:.1f} frames/s"
                 + (f", {self.dropped} dropped (latest-frame policy)" if self.dropped else "")]
        width = max((len(n) for n in self.exit_names), default=4)
        for name in self.exit_names:
            n = self.counts.get(name, 0)
            lines.append(f"  {name:<{width}}  {n:6d}  {'#' * round(40 * n / max(self.frames, 1))}")
        if self.frames:
            lines.append(f"mean latency {self.mean_latency_ms:.2f} ms per frame")
        if self.overlay:
            lines.append(f"overlay video {self.overlay} ({self.overlay_codec})")
        if self.error:
            lines.append(f"stopped early: {self.error}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "dropped": self.dropped, "seconds": round(self.seconds, 3),
                "frames_per_s": round(self.fps, 3), "exits": {n: self.counts.get(n, 0) for n in self.exit_names},
                "mean_latency_ms": self.mean_latency_ms, "interrupted": self.interrupted,
                "reconnects": self.reconnects, "error": self.error}


class StatusLine:
    """The live status: on a terminal one line rewritten in place (at most ``refresh`` seconds
    apart), in a log (not a terminal) one full line every ``every`` seconds."""

    def __init__(self, every: float = 5.0, stream=None, tty: Optional[bool] = None, refresh: float = 0.5,
                 clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every = refresh if self.tty else every
        self.clock = clock
        self._last = clock()
        self._shown = False

    def update(self, summary: StreamSummary) -> None:
        t = self.clock()
        if t - self._last < self.every:
            return
        self._last = t
        self._show(summary.status())

    def _show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def run_frames(pipe, frames, on_result: Callable, exit=None, max_frames: Optional[int] = None,
               threaded: bool = True, latest: bool = False, status: Optional[StatusLine] = None,
               summary: Optional[StreamSummary] = None, on_stop=None) -> StreamSummary:
    """Segment every frame of ``frames`` (an iterator of Frame) with ``pipe``, calling
    ``on_result(frame, result)`` for each in order. Decoding runs on its own thread unless
    ``threaded`` is False (then each frame is decoded before its inference, no overlap; the
    benchmark compares both). ``latest``: the live-source policy (see Prefetch). Ctrl-C ends
    the loop cleanly: the summary says ``interrupted``."""
    s = summary or StreamSummary(list(pipe.exit_names))
    pre = Prefetch(frames, latest=latest, on_stop=on_stop) if threaded else None
    source = iter(pre) if pre is not None else iter(frames)
    t0 = time.perf_counter()
    try:
        while max_frames is None or s.frames < max_frames:
            try:
                frame = next(source)
            except StopIteration:
                break
            res = pipe(frame.image, exit=exit)
            on_result(frame, res)
            s.frames += 1
            s.counts[res.exit] += 1
            s.latency_ms_sum += res.timings["total_ms"]
            if pre is not None:
                s.dropped = pre.dropped
            s.seconds = time.perf_counter() - t0
            if status is not None:
                status.update(s)
    except KeyboardInterrupt:
        s.interrupted = True
    finally:
        if pre is not None:
            pre.close()
            s.dropped = pre.dropped
        elif on_stop is not None:
            on_stop()
        s.seconds = time.perf_counter() - t0
        if status is not None:
            status.close()
    return s


def check_video_output(out, source, package, force: bool) -> Path:
    from mesc.package.outputs import check_dir_output

    inputs = [("PACKAGE", package)]
    if not str(source).lower().startswith(("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://",
                                          "rtmp://")):
        inputs.append(("INPUT", source))
    return check_dir_output(out, "run", force, inputs=inputs)


def run_video(pipe, source, out, exit=None, resize: bool = False, every: int = 1, max_frames: Optional[int] = None,
              overlay: bool = False, threaded: bool = True, force: bool = False, status_every: float = 5.0,
              retries: int = 3, retry_wait: float = 1.0, echo=print, status_stream=None, opener=None) -> StreamSummary:
    """Segment the frames of ``source`` (a video file or a live source) into the folder ``out``:
    ``results.csv`` (one row per frame: index, time, exit, confidence, latency), ``results.json``
    (the run's settings and summary) and with ``overlay`` ``overlay.mp4`` at the input's frame
    rate (divided by ``every``). A file that cannot be read, a codec PyAV lacks, or a frame of
    another size without ``resize`` is an :class:`InputError` before anything is written; a live
    source that drops is reopened ``retries`` times, then the run ends with what it has."""
    from mesc.package.staging import staging_dir
    from mesc.ranges import check_int, check_real
    from mesc.runtime.overlay import class_table, overlay as draw_overlay

    # the ranges the command's options declare, checked here too for library callers
    every = check_int("--every", every, 1)
    max_frames = check_int("--max-frames", max_frames, 1, optional=True)
    retries = check_int("--retries", retries, 0, 100)
    status_every = check_real("--status-every", status_every, 0.1, 3600)
    retry_wait = check_real("retry_wait", retry_wait, 0)
    out = check_video_output(out, source, pipe.pkg.root, force)
    _, h, w = pipe.chw
    src = VideoSource(source, size=(h, w), resize=resize, every=every, retries=retries, retry_wait=retry_wait,
                      echo=echo, opener=opener)
    names, colours = class_table(pipe.pkg)
    summary = StreamSummary(list(pipe.exit_names))
    try:
        with staging_dir(out, force=True) as tmp:
            writer = None
            if overlay:
                fps = (src.fps or 30.0) / every
                writer = VideoWriter(tmp / OVERLAY_VIDEO, fps)
                summary.overlay, summary.overlay_codec = OVERLAY_VIDEO, _codec_name(writer.codec)
            with open(tmp / "results.csv", "w", newline="") as f:
                table = csv.writer(f)
                table.writerow(CSV_HEADER)

                def on_result(frame, res):
                    conf = res.confidences.get(res.exit)
                    table.writerow([frame.index, f"{frame.time:.6f}", res.exit, res.exit_index,
                                    "" if conf is None else f"{conf:.6f}", f"{res.timings['total_ms']:.3f}"])
                    if writer is not None:
                        writer.write(draw_overlay(frame.image, res.labels, names, colours, res.exit,
                                                  res.timings["total_ms"]))

                status = StatusLine(status_every, stream=status_stream)
                try:
                    run_frames(pipe, src.frames(), on_result, exit=exit, max_frames=max_frames, threaded=threaded,
                               latest=src.live, status=status, summary=summary, on_stop=src.stop)
                except InputError as err:
                    if summary.frames == 0:  # nothing to keep: the run fails whole
                        raise
                    # e.g. a camera that changed resolution an hour in: keep what was segmented
                    summary.error = str(err)
                    echo(f"stopped: {err}")
            if writer is not None:
                writer.close()
            summary.reconnects = src.reconnects
            if summary.frames == 0 and not summary.interrupted:
                raise InputError(f"{source}: no frame could be read")
            write_json_atomic(tmp / "results.json", {
                **RUN_MARKER, "package": str(pipe.pkg.root), "input": str(source), "live": src.live,
                "codec": src.codec, "fps": src.fps, "every": every, "resize": resize,
                "backend": pipe.runner.backend, "device": str(pipe.runner.device),
                "thresholds": {e: pipe.thresholds(e) for e in pipe.exit_names},
                "images": [], "outputs": [OVERLAY_VIDEO] if overlay else [],
                "overlay_codec": summary.overlay_codec, "summary": summary.as_dict(),
            })
    finally:
        src.close()
    return summary


def _codec_name(codec: str) -> str:
    from mesc.runtime.video import FALLBACK_ENCODER

    if codec == FALLBACK_ENCODER:
        return "MPEG-4 Part 2 (mpeg4): this PyAV has no H.264 encoder"
    return f"H.264 ({codec})"


__all__ = ["StatusLine", "StreamSummary", "run_frames", "run_video", "CSV_HEADER", "OVERLAY_VIDEO"]
