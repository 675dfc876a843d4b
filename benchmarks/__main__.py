"""``python -m mesc.benchmarks [--quick] [--scenario NAME ...] [--out DIR] [--list]`` (``make bench``).

Runs the named scenarios (default: every one this machine can run) and records them in
``benchmarks/results/`` (JSON per scenario and RESULTS.md). ``--quick`` runs a reduced version of
each to check the whole path works; it records nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesc.benchmarks.scenarios import RESULTS, SCENARIOS, write_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", "-s", action="append", choices=sorted(SCENARIOS), help="Run only these.")
    ap.add_argument("--quick", action="store_true", help="Fewer models and rounds; records only with --out.")
    ap.add_argument("--out", type=Path, default=None, help=f"Results folder (default: {RESULTS}).")
    ap.add_argument("--list", action="store_true", help="List the scenarios and whether they can run here.")
    args = ap.parse_args(argv)
    chosen = [SCENARIOS[n] for n in (args.scenario or SCENARIOS)]
    if args.list:
        for s in chosen:
            why = s.unavailable()
            print(f"{s.name:20s} {'runs here' if why is None else 'skipped: ' + why}  -- {s.about}")
        return 0
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    for s in chosen:
        why = s.unavailable()
        if why:
            print(f"[{s.name}] skipped: {why}", flush=True)
            continue
        result = s.run(quick=args.quick, say=lambda m: print(m, flush=True))
        print(s.summary(result), "\n", flush=True)
        if out is not None:
            print(f"[{s.name}] recorded {write_results(result, out)} ({result['wall_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
