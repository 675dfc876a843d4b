"""The ``serve-cpu`` scenario: ``python -m mesc.benchmarks -s serve-cpu``.

Two environments take part, because nvidia-pytriton pins numpy<2 and the serve venv has no
torch: this interpreter (the main venv) prepares the package as ``make demo`` does, but
exported with ``--dynamic-batch`` so Triton's batches compact as images exit (export, latencies
recorded with ``mesc bench --record``, calibrated on synthetic scenes with ``--max-drop 0.5``),
and the serve venv's interpreter runs :mod:`mesc.benchmarks.serve_load` against it. That
interpreter is ``$MESC_SERVE_PYTHON``, else ``.venv-serve/bin/python`` beside this checkout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVE_PYTHON_ENV = "MESC_SERVE_PYTHON"
REPO = Path(__file__).resolve().parents[1]


def serve_python() -> Path:
    return Path(os.environ.get(SERVE_PYTHON_ENV) or REPO / ".venv-serve" / "bin" / "python")


@dataclasses.dataclass
class ServeScenario:
    name: str
    about: str
    json_name: str
    requests: int = 48  # one-image requests per concurrency level and mode
    calib_images: int = 200
    quick: dict = dataclasses.field(default_factory=lambda: {"requests": 8, "calib_images": 32})

    def unavailable(self) -> str | None:
        py = serve_python()
        if not py.exists():
            return (f"no serve environment at {py} (nvidia-pytriton pins numpy<2): create it with "
                    f"`make .venv-serve/.mesc-installed`, or point ${SERVE_PYTHON_ENV} at one")
        return None

    def run(self, quick: bool = False, say=print) -> dict:
        cfg = {"requests": self.requests, "calib_images": self.calib_images, **(self.quick if quick else {})}
        load_before, t0 = os.getloadavg(), time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"mesc-{self.name}-") as tmp:
            pkg = Path(tmp) / "demo"
            prepare_package(pkg, Path(tmp) / "calib", cfg["calib_images"], say=lambda m: say(f"[{self.name}] {m}"))
            say(f"[{self.name}] load: {serve_python()} -m mesc.benchmarks.serve_load")
            out = Path(tmp) / "serve_load.json"
            subprocess.run([str(serve_python()), "-m", "mesc.benchmarks.serve_load", "--package", str(pkg),
                            "--requests", str(cfg["requests"]), "--json", str(out)], check=True)
            result = json.loads(out.read_text())
        result.update(scenario=self.name, about=self.about, quick=quick,
                      package="the demo exported with --dynamic-batch --policy-at native, latencies recorded "
                              f"(mesc bench --record), calibrated on {cfg['calib_images']} synthetic scenes "
                              "(--max-drop 0.5)",
                      load_average={"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
                      wall_seconds=round(time.perf_counter() - t0, 1))
        return result

    def summary(self, result: dict) -> str:
        from mesc.benchmarks.serve_load import run_line

        return "\n".join(run_line(r) for r in result["runs"])


def prepare_package(pkg: Path, calib: Path, calib_images: int, say=print) -> None:
    """The calibrated demo as ``make demo`` makes it, exported with ``--dynamic-batch``."""
    steps = [("export", ["export", "-o", pkg, "--policy-at", "native", "--dynamic-batch", "--force"]),
             ("record latencies", ["bench", pkg, "--warmup", "3", "--iters", "20", "--baseline", "none", "--record"]),
             ("synthetic scenes", ["synth-data", "-o", calib, "--count", calib_images, "--seed", "11", "--force"]),
             ("calibrate", ["calibrate", pkg, "--data", calib, "--max-drop", "0.5", "--write"])]
    for what, args in steps:
        say(what)
        subprocess.run([sys.executable, "-m", "mesc.cli", *map(str, args)], check=True, stdout=subprocess.DEVNULL)
