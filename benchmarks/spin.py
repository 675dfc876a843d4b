"""How ONNX Runtime's intra-op threads wait, and what it costs a chain of small segments on CPU.

    python -m mesc.benchmarks.spin [--package DIR] [--iters 200] [--warmup 20] [--threads N] [--json OUT]

Without ``--package`` the embedded demo model is exported with the policy at native resolution
(what ``make demo`` runs). Each exit is taken budgeted (``pipe(x, exit=k)``, a uint8 image), on
one pipeline per ``spin`` mode of :func:`mesc.runtime.backends.onnxrt.loader.session_options`:

* ``run``  (mesc's default) threads spin between a segment's operators and stop as its run returns;
* ``off``  threads sleep between operators: every parallel operator pays a wake-up;
* ``on``   onnxruntime's default: threads keep spinning for a while after the run, on the cores
           the next segment's pool needs. Loaded and timed alone, after the others: its pools,
           even idle, slowed the other pipelines by half.

``run`` and ``off`` are interleaved round by round so that drift on the machine hits both alike.
Reports the median per exit and mode, and each exit's ratio to the final exit in that mode: the
ratio early exit gains.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment, interleave
from mesc.package.staging import write_json_atomic

MODES = ("run", "off")


def measure(package, iters: int, warmup: int, threads: int | None) -> dict:
    import mesc

    # "on" opens only after the others close: even idle, its spinning pools slowed them by half
    pipes = {m: mesc.load(package, threads=threads, spin=m) for m in MODES}
    try:
        c, h, w = pipes["run"].chw
        x = np.random.default_rng(0).integers(0, 256, (1, h, w, c), dtype=np.uint8)
        exits = pipes["run"].exit_names
        variants = {f"{m}:{e}": (lambda p=pipes[m], e=e: p(x, exit=e) and None) for m in MODES for e in exits}
        rounds = interleave(variants, warmup, iters)
        for m in MODES:
            pipes[m].close()
        pipes["on"] = mesc.load(package, threads=threads, spin="on")
        rounds.update(interleave({f"on:{e}": (lambda e=e: pipes["on"](x, exit=e) and None) for e in exits},
                                 warmup, max(iters // 4, 1)))
        env = environment(pipes["on"].runner.device, threads=threads)
    finally:
        for p in pipes.values():
            p.close()
    out = {"package": str(package), "environment": env, "iters": iters, "warmup": warmup, "input": [1, h, w, c],
           "modes": {}}
    for m in (*MODES, "on"):
        med = {e: float(np.median(rounds[f"{m}:{e}"]["total"])) for e in exits}
        out["modes"][m] = {"median_ms": med, "ratio_to_final": {e: med[e] / med[exits[-1]] for e in exits},
                           "rounds": len(rounds[f"{m}:{exits[-1]}"]["total"])}
    return out


def format_table(result: dict) -> str:
    exits = list(result["modes"]["run"]["median_ms"])
    lines = ["spin  " + "  ".join(f"{e:>8s} ms (ratio)" for e in exits)]
    for m, r in result["modes"].items():
        lines.append(f"{m:4s}  " + "  ".join(f"{r['median_ms'][e]:11.2f} ({r['ratio_to_final'][e]:.2f})"
                                             for e in exits))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.spin", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, default=None, help="A package (default: export the demo).")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="ONNX Runtime threads per segment (default: the CPUs; onnxruntime's own default counts "
                         "physical cores, and with one thread the modes do not differ).")
    ap.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mesc-spin-") as tmp:
        package = args.package
        if package is None:
            from mesc.exporters.export import ExportOptions, export

            package = Path(tmp) / "demo"
            export("demo", package, options=ExportOptions(policy_at="native", verify=False))
        result = measure(package, args.iters, args.warmup, args.threads)
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
