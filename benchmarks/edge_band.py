"""The two edge bands compared: their pixel share, and held-out latency at a calibrated bound.

    python -m mesc.benchmarks.edge_band PACKAGE [PACKAGE ...] --data TEST_DIR [--share-images 48]
        [--rounds 5] [--threads 1] [--json OUT]

Band share: every exit of the first package runs over the first ``--share-images`` scenes of
``--data``; on the labels its policy reads (the output labels, or the native ones with
``--policy-at native``), at the stride in its manifest, the share of pixels on the paper's and on
the wide band (:func:`mesc.policy.edge_band_fast`) per exit: mean, min and max over the images.

Latency: every package (each calibrated with ``mesc calibrate --write``, thresholds as stored)
segments all of ``--data`` one image per call through the runtime, beside the final exit alone;
rounds interleave the packages so that load on the machine falls on all of them alike. Per
package: mean latency (median over the rounds), its ratio to final-only, the exit shares and the
mIoU drop against final-only, measured from the labels the runtime returned.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mesc.benchmarks.harness import environment
from mesc.benchmarks.shared import input_size, run_and_score


def band_shares(package, data_dir, images: int) -> dict:
    """Per exit and band: mean, min and max share of pixels on the band over the images."""
    from mesc.calibration.exits.memo import load_calibration_set, package_classes
    from mesc.policy import EDGE_BANDS
    from mesc.package import Package
    from mesc.policy import edge_band_fast
    from mesc.runtime import load

    pkg = Package.load(package)
    data = load_calibration_set(data_dir, input_size(pkg), package_classes(pkg), limit=images)
    shares = {ex.name: {b: [] for b in EDGE_BANDS} for ex in pkg.exits}
    with load(package, backend="onnxruntime", device="cpu") as pipe:
        for _, image, _ in data:
            for ex, r in zip(pkg.exits, pipe.anytime([image], logits=True, all_exits=True)):
                r = r[0]
                labels = r.labels if r.policy_logits is None else np.asarray(r.policy_logits).argmax(0)
                for band in EDGE_BANDS:
                    shares[ex.name][band].append(float(edge_band_fast(labels[None], ex.policy["stride"], band).mean()))
    return {"images": len(data),
            "exits": {name: {"stride": pkg.exit(name).policy["stride"], "at": pkg.exit(name).policy.get("at", "output"),
                             **{b: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                                for b, v in per.items()}}
                      for name, per in shares.items()}}


def held_out_latency(packages, data_dir, rounds: int, threads: int | None) -> dict:
    from mesc.calibration.exits.memo import load_calibration_set, package_classes
    from mesc.policy import edge_band_of
    from mesc.package import Package
    from mesc.runtime import load

    pkgs = [Package.load(p) for p in packages]
    num_classes = package_classes(pkgs[0])
    test = load_calibration_set(data_dir, input_size(pkgs[0]), num_classes)
    images, masks = [t[1] for t in test], [t[2] for t in test]
    pipes = [load(p, backend="onnxruntime", device="cpu", threads=threads) for p in packages]
    final = pkgs[0].exits[-1].name
    runs = {"final-only": [], **{str(p): [] for p in packages}}
    try:
        for pipe in pipes:  # warm-up: sessions, allocations
            run_and_score(pipe, images[:8], masks[:8], num_classes)
        for _ in range(rounds):
            runs["final-only"].append(run_and_score(pipes[0], images, masks, num_classes, exit=final))
            for p, pipe in zip(packages, pipes):
                runs[str(p)].append(run_and_score(pipe, images, masks, num_classes))
        env = environment(pipes[0].runner.device, threads=threads)
    finally:
        for pipe in pipes:
            pipe.close()
    ref = runs["final-only"]
    ref_ms = float(np.median([np.mean(x["latency_ms"]) for x in ref]))
    out = {"environment": env, "images": len(images), "rounds": rounds,
           "final_only": {"mean_ms": ref_ms, "miou": ref[0]["miou"]}, "packages": {}}
    for p, pkg in zip(packages, pkgs):
        rr = runs[str(p)]
        means = [float(np.mean(x["latency_ms"])) for x in rr]
        names = rr[0]["exits"]
        out["packages"][str(p)] = {
            "band": [edge_band_of(ex.policy) for ex in pkg.exits],
            "thresholds": {ex.name: {k: ex.policy[k] for k in ("th_pix", "th_img")}
                           for ex in pkg.exits if ex.enabled},
            "mean_ms_rounds": means, "mean_ms": float(np.median(means)), "ratio": float(np.median(means)) / ref_ms,
            "drop_pp": 100 * (ref[0]["miou"] - rr[0]["miou"]),
            "exit_shares": {e: names.count(e) / len(names) for e in sorted(set(names))}}
    return out


def format_table(result: dict) -> str:
    lines = []
    share = result.get("share")
    if share:
        lines.append(f"band share over {share['images']} images (mean, min-max):")
        for name, e in share["exits"].items():
            lines.append(f"  {name} (os {e['stride']}, {e['at']}): "
                         + "; ".join(f"{b} {100 * e[b]['mean']:.1f} % ({100 * e[b]['min']:.1f}-{100 * e[b]['max']:.1f})"
                                     for b in ("paper", "wide")))
    lat = result.get("latency")
    if lat:
        lines.append(f"held-out: {lat['images']} images, {lat['rounds']} rounds; final only "
                     f"{lat['final_only']['mean_ms']:.2f} ms, mIoU {100 * lat['final_only']['miou']:.2f} %")
        for p, r in lat["packages"].items():
            shares = ", ".join(f"{e} {100 * v:.0f}%" for e, v in r["exit_shares"].items())
            lines.append(f"  {p} ({'/'.join(sorted(set(r['band'])))}): {r['mean_ms']:.2f} ms ({r['ratio']:.2f}x; "
                         f"rounds {', '.join(f'{v:.2f}' for v in r['mean_ms_rounds'])}), drop {r['drop_pp']:.2f} pp, "
                         f"{shares}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mesc.benchmarks.edge_band", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="+", type=Path, help="Calibrated packages (the first one's exits give the shares).")
    ap.add_argument("--data", type=Path, required=True, help="Labelled held-out scenes (mesc synth-data).")
    ap.add_argument("--share-images", type=int, default=48, help="Scenes the band shares are taken over.")
    ap.add_argument("--rounds", type=int, default=5, help="Latency rounds (0: shares only).")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per segment.")
    ap.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = ap.parse_args(argv)
    result = {"share": band_shares(args.packages[0], args.data, args.share_images)}
    if args.rounds > 0:
        result["latency"] = held_out_latency(args.packages, args.data, args.rounds, args.threads)
    print(format_table(result))
    if args.json:
        from mesc.package.staging import write_json_atomic

        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
