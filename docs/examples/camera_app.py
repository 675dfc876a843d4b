"""A camera-style application embedding mesc: a capture thread feeds one shared pipeline, the
results come out on a queue.

    python docs/examples/camera_app.py PKG SOURCE [--seconds 10]

SOURCE is a video file, /dev/video0, or an rtsp:// or http:// URL (PyAV: pip install
'mesc[video]'). On a Jetson, replace ``capture_frames`` with frames from GStreamer's appsink
(hardware decoding, nvv4l2decoder); the pipeline only ever sees numpy arrays:

    pipeline = "rtspsrc location=... ! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! " \\
               "video/x-raw,format=RGBA ! appsink name=sink max-buffers=1 drop=true"
    # for each sample: buf.map() -> np.frombuffer(...).reshape(h, w, 4)[..., :3] -> Frame(...)

Threading rules of a mesc pipeline (``mesc.load``), which this app follows:

* one thread calls a pipeline at a time: its runner holds per-call state (ONNX Runtime's
  bound buffers, TensorRT's execution context and CUDA stream), so two threads that share one
  pipeline must serialise their calls (a lock), or each load a pipeline of their own;
* ``set_thresholds``/``set_enabled`` change what the next call does: call them from the thread
  that runs the pipeline, or between calls under the same lock;
* capture, decoding, drawing and writing results need no pipeline: run them on other threads
  (here: capture on its own thread, the consumer on the main thread), so they overlap inference;
* close the pipeline (``with`` block) after the last call has returned, on the thread that
  called it.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time


class CameraApp:
    """``frames`` (an iterator of :class:`mesc.runtime.video.Frame`) is read on a capture
    thread; :meth:`run_inference` (one thread, the only one touching ``pipe``) segments each
    frame and puts ``(frame index, time, exit, confidence, latency ms)`` on :attr:`results`;
    ``None`` on the queue marks the end.

    ``latest``: live sources keep only the newest frame while one is in flight (the others are
    counted in :attr:`dropped`); a file source (``latest=False``) waits instead, losing none.
    """

    def __init__(self, pipe, frames, latest: bool = True, depth: int = 2):
        self.pipe = pipe
        self.frames = frames
        self.latest = latest
        self.inbox: queue.Queue = queue.Queue(maxsize=depth)
        self.results: queue.Queue = queue.Queue()
        self.dropped = 0
        self.stopping = threading.Event()
        self._capture = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._infer = threading.Thread(target=self.run_inference, name="inference", daemon=True)

    def _capture_loop(self) -> None:
        try:
            for frame in self.frames:
                if self.stopping.is_set():
                    break
                while True:
                    try:
                        self.inbox.put(frame, timeout=0.05 if not self.latest else 0)
                        break
                    except queue.Full:
                        if self.stopping.is_set():
                            return
                        if self.latest:  # drop the oldest waiting frame, keep the newest
                            try:
                                self.inbox.get_nowait()
                                self.dropped += 1
                            except queue.Empty:
                                pass
        finally:
            self.inbox.put(None)

    def run_inference(self) -> None:
        try:
            while True:
                frame = self.inbox.get()
                if frame is None or self.stopping.is_set():
                    break
                res = self.pipe(frame.image)
                self.results.put((frame.index, frame.time, res.exit, res.confidences.get(res.exit),
                                  res.timings["total_ms"]))
        finally:
            self.results.put(None)

    def start(self) -> "CameraApp":
        self._capture.start()
        self._infer.start()
        return self

    def stop(self) -> None:
        """Ask both threads to end, and wait for them."""
        self.stopping.set()
        while self._capture.is_alive() or self._infer.is_alive():
            try:
                self.inbox.get_nowait()  # let a blocked capture thread finish
            except queue.Empty:
                pass
            self._capture.join(0.05)
            self._infer.join(0.05)


def capture_frames(source, size, resize: bool = True):
    """Frames of ``source`` through PyAV, at the package's size; and whether it is live."""
    from mesc.runtime.video import VideoSource

    src = VideoSource(source, size=size, resize=resize)
    return src.frames(), src.live


def main(argv=None):
    import mesc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("source")
    ap.add_argument("--seconds", type=float, default=10.0, help="stop after this long")
    args = ap.parse_args(argv)
    with mesc.load(args.package) as pipe:
        _, h, w = pipe.chw
        frames, live = capture_frames(args.source, (h, w))
        app = CameraApp(pipe, frames, latest=live).start()
        t_end = time.monotonic() + args.seconds
        n = 0
        try:
            while time.monotonic() < t_end:
                try:
                    item = app.results.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    break
                n += 1
                index, t, exit_name, conf, ms = item
                print(f"frame {index} t={t:.3f}s {exit_name} confidence={conf} {ms:.1f} ms")
        except KeyboardInterrupt:
            pass
        finally:
            app.stop()
    print(f"{n} frames, {app.dropped} dropped")


if __name__ == "__main__":
    main()
