"""The project's named benchmark scenarios and their recorded results.

Each scenario exports its models into a temporary directory (``verify=False``: verification
belongs to the export tests), builds engines where it needs them, runs :func:`bench` on each
and writes ``results/bench_<scenario>.json``; ``results/RESULTS.md`` is regenerated from every
recorded JSON. Scenarios whose backend is absent here (CUDA, TensorRT) say so and are skipped.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from mesc.benchmarks.bench import BenchOptions, bench
from mesc.benchmarks.harness import environment
from mesc.benchmarks.results_md import rewrite_results_md
from mesc.benchmarks.serve_scenario import ServeScenario
from mesc.timestamps import utc_now

RESULTS = Path(__file__).parent / "results"
REFERENCE = ("drn50-fcn", "drn50-deeplab", "mbv2-fcn", "mbv2-deeplab", "hrnet18", "unet-skip")
TRANSFORMER = ("mit-b0",)
FULL = (1, 3, 512, 1024)
DEMO = (1, 3, 128, 256)


@dataclasses.dataclass
class Scenario:
    name: str
    about: str
    models: tuple
    shape: tuple
    backend: str = "onnxruntime"
    device: str = "cpu"
    engines: str | None = None  # TensorRT: build target "host" in this precision first
    warmup: int = 3
    iters: int = 20
    data: int = 0  # synthetic scenes for the input-dependent run (demo model only)
    quick: dict = dataclasses.field(default_factory=dict)  # overrides for --quick

    def unavailable(self) -> str | None:
        """Why this scenario cannot run on this machine (None: it can)."""
        if self.device == "cpu":
            return None
        import importlib.util

        if self.backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed"
        try:
            import onnxruntime as ort

            if self.backend == "onnxruntime" and "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime has no CUDA provider (pip install 'mesc[gpu]')"
        except ImportError:
            return "onnxruntime is not installed"
        from mesc.runtime.devices import DeviceError, cuda_device_count

        try:
            if not cuda_device_count():
                return "no CUDA device"
        except DeviceError as err:  # no CUDA runtime at all
            return str(err)
        return None

    @property
    def json_name(self) -> str:
        return f"bench_{self.name}.json"

    def run(self, quick: bool = False, say=print) -> dict:
        return run_scenario(self, quick=quick, say=say)

    def summary(self, result: dict) -> str:
        from mesc.benchmarks.bench import format_result

        return "\n\n".join(format_result(r) for r in result["runs"])


SCENARIOS = {s.name: s for s in [
    Scenario("demo-cpu", "the trained demo model at its 128x256, input-dependent over 48 synthetic scenes",
             ("demo",), DEMO, warmup=5, iters=30, data=48, quick={"iters": 10, "data": 16}),
    Scenario("reference-cpu", "the reference models at 512x1024 (full width, all exits); few iterations: "
             "a 512x1024 DRN-50 pass takes seconds on a small CPU",
             REFERENCE, FULL, warmup=1, iters=5, quick={"models": ("mbv2-fcn",), "iters": 2}),
    Scenario("transformer-cpu", "the transformer reference model (MiT-B0 encoder, SegFormer decode head as the "
             "final exit) at 512x1024; few iterations, as for reference-cpu", TRANSFORMER, FULL, warmup=1, iters=5,
             quick={"iters": 2}),
    Scenario("transformer-small-cpu", "the transformer reference model at 128x256", TRANSFORMER, DEMO, warmup=3,
             iters=20, quick={"iters": 5}),
    Scenario("demo-cuda", "the demo model on ONNX Runtime CUDA", ("demo",), DEMO, device="cuda:0", warmup=20,
             iters=200, data=48),
    Scenario("reference-cuda", "the reference models at 512x1024 on ONNX Runtime CUDA", REFERENCE, FULL,
             device="cuda:0", warmup=10, iters=50, quick={"iters": 10}),
    Scenario("reference-trt-fp32", "the reference models at 512x1024, TensorRT FP32 engines (target host)",
             REFERENCE, FULL, backend="tensorrt", device="cuda:0", engines="fp32", warmup=10, iters=50,
             quick={"models": ("mbv2-fcn",), "iters": 10}),
    Scenario("reference-trt-fp16", "the reference models at 512x1024, TensorRT FP16 engines (target host)",
             REFERENCE, FULL, backend="tensorrt", device="cuda:0", engines="fp16", warmup=10, iters=50,
             quick={"models": ("mbv2-fcn",), "iters": 10}),
    ServeScenario("serve-cpu", "mesc serve (PyTriton, ONNX Runtime CPU) under 1, 4 and 16 concurrent one-image "
                  "gRPC clients, the calibrated demo package vs its final exit", "serve_load_cpu.json"),
]}


def run_scenario(s: Scenario, quick: bool = False, say=print) -> dict:
    from mesc.exporters.export import ExportOptions, export

    cfg = {"models": s.models, "warmup": s.warmup, "iters": s.iters, "data": s.data, **(s.quick if quick else {})}
    runs, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mesc-{s.name}-") as tmp:
        tmp = Path(tmp)
        data = None
        if cfg["data"]:
            from mesc.datasets.synthetic import generate

            data = tmp / "data"
            generate(data, cfg["data"], seed=12, size=s.shape[2:])
        for model in cfg["models"]:
            say(f"[{s.name}] {model} {'x'.join(map(str, s.shape))}: export")
            pkg = export(model, tmp / model, options=ExportOptions(input_shape=s.shape, verify=False))
            if s.engines:
                from mesc.engines.build import build

                say(f"[{s.name}] {model}: build {s.engines} engines")
                build(pkg.root, "host", s.engines)
            opts = BenchOptions(backend=s.backend, device=s.device, target="host" if s.engines else None,
                                warmup=cfg["warmup"], iters=cfg["iters"], data=str(data) if data else None)
            say(f"[{s.name}] {model}: bench ({cfg['warmup']} warm-up + {cfg['iters']} rounds)")
            r = bench(pkg.root, opts, progress=False, say=say)
            r["package"] = f"<export of {model} at {'x'.join(map(str, s.shape))}>"
            if r["data"]:
                r["data"]["source"] = f"{cfg['data']} synthetic scenes (mesc synth-data, seed 12)"
            runs.append(r)
    from mesc.runtime.devices import parse_device

    return {"scenario": s.name, "about": s.about, "quick": quick,
            "date": utc_now(),
            "machine": environment(parse_device(s.device)), "wall_seconds": round(time.perf_counter() - t0, 1),
            "settings": {"warmup": cfg["warmup"], "iters": cfg["iters"], "shape": list(s.shape)}, "runs": runs}


def write_results(result: dict, out: Path) -> Path:
    from mesc.package.staging import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    path = out / SCENARIOS[result["scenario"]].json_name
    write_json_atomic(path, result)
    rewrite_results_md(out)
    return path
