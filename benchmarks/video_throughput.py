"""Throughput of ``mesc run`` on video: frames/s and exit shares, decode on its own thread
against decode-then-infer on the calling thread, at the package's size and at a larger one
resized to it.

    python -m mesc.benchmarks.video_throughput PKG [--seconds 30] [--fps 30]
        [--sizes 128x256,512x1024] [--rounds 2] [--json OUT]

The video is synthetic (:func:`mesc.datasets.synthetic.video_frames`: a new warehouse scene each
second, panning) and written with the same library that reads it (PyAV, H.264 where the wheel
has libx264). Each configuration runs the whole file through :func:`run_video` (results.csv
written, no overlay); ``decode_only_fps`` is PyAV decoding (and resizing) alone, the ceiling
decode puts on the pipeline. The machine's load average is recorded with every figure: on a
shared machine the figures move with the other work, so the two modes alternate (on, off in
even rounds; off, on in odd ones) and ``summary`` gives each mode's median over ``rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def _size(text: str):
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def decode_only(path, size, resize: bool) -> float:
    from mesc.runtime.video import VideoSource

    src = VideoSource(path, size=size, resize=resize)
    t0 = time.perf_counter()
    n = sum(1 for _ in src.frames())
    src.close()
    return n / (time.perf_counter() - t0)


def measure(pkg, seconds: float = 30.0, fps: float = 30.0, sizes=((128, 256), (512, 1024)), seed: int = 0,
            work=None, rounds: int = 2) -> dict:
    import statistics

    import av

    import mesc
    from mesc.datasets.synthetic import video_frames
    from mesc.runtime.video import write_video
    from mesc.runtime.video_run import run_video

    work = Path(work or tempfile.mkdtemp(prefix="mesc-video-bench-"))
    runs = []
    with mesc.load(pkg) as pipe:
        _, ph, pw = pipe.chw
        for size in sizes:
            path = work / f"synthetic_{size[0]}x{size[1]}.mp4"
            t0 = time.perf_counter()
            codec = write_video(path, video_frames(int(seconds * fps), size, seed=seed), fps=fps)
            encode_s = time.perf_counter() - t0
            resize = tuple(size) != (ph, pw)
            dec = decode_only(path, (ph, pw), resize)
            order = [(r, t) for r in range(rounds) for t in ((True, False) if r % 2 == 0 else (False, True))]
            for rnd, threaded in order:
                load0 = os.getloadavg()
                s = run_video(pipe, path, work / f"out_{size[0]}x{size[1]}_{int(threaded)}", resize=resize,
                              threaded=threaded, force=True, echo=lambda m: None, status_every=3600)
                runs.append({
                    "round": rnd, "video": f"{size[0]}x{size[1]}", "package_input": f"{ph}x{pw}", "resize": resize,
                    "decode_thread": threaded, "frames": s.frames, "seconds": round(s.seconds, 2),
                    "frames_per_s": round(s.fps, 1), "mean_latency_ms": round(s.mean_latency_ms, 2),
                    "exit_shares": {k: round(v, 3) for k, v in s.shares.items()},
                    "decode_only_fps": round(dec, 1), "codec": codec, "encode_seconds": round(encode_s, 1),
                    "loadavg_before": [round(v, 2) for v in load0],
                    "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                })
                print(json.dumps(runs[-1]), flush=True)
        backend, device = pipe.runner.backend, str(pipe.runner.device)
    summary = []
    for size in sizes:
        for threaded in (True, False):
            rs = [r for r in runs if r["video"] == f"{size[0]}x{size[1]}" and r["decode_thread"] == threaded]
            summary.append({"video": rs[0]["video"], "resize": rs[0]["resize"], "decode_thread": threaded,
                            "median_frames_per_s": round(statistics.median(r["frames_per_s"] for r in rs), 1),
                            "frames_per_s": [r["frames_per_s"] for r in rs],
                            "median_latency_ms": round(statistics.median(r["mean_latency_ms"] for r in rs), 2),
                            "exit_shares": rs[0]["exit_shares"], "decode_only_fps": rs[0]["decode_only_fps"],
                            "loadavg_1min": [r["loadavg_before"][0] for r in rs]})
    return {
        "benchmark": "video_throughput", "package": str(pkg), "video_seconds": seconds, "fps": fps,
        "backend": backend, "device": device, "cpus": os.cpu_count(), "python": platform.python_version(),
        "pyav": av.__version__, "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary, "runs": runs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--sizes", default="128x256,512x1024")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    res = measure(args.package, args.seconds, args.fps, [_size(s) for s in args.sizes.split(",")],
                  rounds=args.rounds)
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
