"""Served load: ``mesc serve`` under 1, 4 and 16 concurrent clients, calibrated vs final exit.

    python -m mesc.benchmarks.serve_load --package out/demo [--requests 48] [--json OUT]

Runs in the serve environment (``make .venv-serve/.mesc-installed``); ``python -m mesc.benchmarks
-s serve-cpu`` (main venv) prepares a calibrated dynamic-batch demo package, runs this against it
and records the result. Starts ``mesc serve`` on free loopback ports, then for each concurrency level sends a
bounded number of one-image gRPC requests, once with the package's calibrated exits and once
forced to the final exit (request parameter ``exit``), and reports throughput, p50/p99 latency
and the mean batch Triton served (from its metrics: inferences / executions).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment
from mesc.timestamps import utc_now

RESULTS = Path(__file__).parent / "results"
LEVELS = (1, 4, 16)


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def _load(url, model, images, clients, requests, exit):
    from mesc.serving.client import Client

    latencies, lock = [], threading.Lock()
    per_client = max(1, requests // clients)

    def worker(k):
        with Client(url, model) as c:
            for i in range(per_client):
                im = images[(k * per_client + i) % len(images)][None]
                t = time.perf_counter()
                c.infer(im, exit=exit)
                with lock:
                    latencies.append((time.perf_counter() - t) * 1e3)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {"clients": clients, "requests": len(lat), "throughput_ips": len(lat) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def run_line(r: dict) -> str:
    return (f"{r['mode']:10s} {r['clients']:2d} clients: {r['throughput_ips']:6.1f} img/s  p50 {r['p50_ms']:6.1f} ms"
            f"  p99 {r['p99_ms']:6.1f} ms  mean batch {r['mean_batch']:.2f}")


def run(package: Path, requests: int, say=print) -> dict:
    import tempfile

    from mesc.datasets.synthetic import generate
    from mesc.runtime.images import read_image
    from mesc.serving.client import Client
    from mesc.serving.local import start_local

    with tempfile.TemporaryDirectory(prefix="mesc-serve-load-") as tmp:
        generate(Path(tmp) / "scenes", 32, seed=12, size=(128, 256))
        images = np.stack([read_image(p) for p in sorted((Path(tmp) / "scenes" / "images").iterdir())])
        server = start_local(package)
        try:
            server.wait_ready()
            url, murl, model = server.urls["grpc"], server.urls["metrics"], server.model
            with Client(url, model) as c:
                final = len(c.infer(images[:1])[0].confidences) - 1
                for _ in range(4):  # warm-up
                    c.infer(images[:1])
            runs = []
            for mode, exit in (("calibrated", None), ("final exit", final)):
                for clients in LEVELS:
                    n0, e0 = _metric(murl, "nv_inference_count"), _metric(murl, "nv_inference_exec_count")
                    r = _load(url, model, images, clients, requests, exit)
                    n1, e1 = _metric(murl, "nv_inference_count"), _metric(murl, "nv_inference_exec_count")
                    r.update(mode=mode, mean_batch=(n1 - n0) / max(e1 - e0, 1))
                    say(run_line(r))
                    runs.append(r)
        finally:
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=60)
    return {"benchmark": "serve_load", "recorded": utc_now(), "package": str(package), "machine": environment("cpu"),
            "server": "mesc serve (PyTriton, ONNX Runtime CPU), 1 instance, max batch 16, queue delay 1000 us, gRPC "
                      "loopback", "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.serve_load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, required=True, help="A calibrated package (make demo: out/demo).")
    ap.add_argument("--requests", type=int, default=48, help="One-image requests per level and mode.")
    ap.add_argument("--json", type=Path, default=RESULTS / "serve_load_cpu.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    result = run(args.package, args.requests, say=lambda m: print(m, flush=True))
    args.json.write_text(json.dumps(result, indent=1))
    print(f"recorded {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
