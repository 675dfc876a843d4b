"""``mesc prepare``: FP16 and explicit-INT8 ONNX graphs in the package, checked against FP32.

TensorRT >= 10 builds strongly typed, so a lower precision must already be in the graph. This
module writes ``onnx_fp16/`` and ``onnx_int8/`` beside ``onnx/``, records them under the
manifest's ``precisions`` with their accuracy against the FP32 package on the calibration
images (ONNX Runtime CPU), and never leaves a half-written directory.

Prepared for a TensorRT target (``target``), the heads' MESS windows are recompiled in the
target's cheaper formulation where it is exact (:mod:`mesc.exporters.policy.pooling`; the
package's own ``onnx/`` graphs keep theirs), recorded per exit under the precision's
``policy_pooling``.
"""

from __future__ import annotations

import time

from mesc.calibration.precision.accuracy import compare_exits
from mesc.calibration.precision.feeds import segment_inputs
from mesc.calibration.precision.images import load_calibration_batches
from mesc.calibration.precision.nodes import exit_tails, named_nodes
from mesc.errors import MescError
from mesc.lazy import require
from mesc.package.outputs import refuse_inside_generated
from mesc.package import Package

PREPARED = ("fp16", "int8")


def prepare(package, precisions=PREPARED, calib_data=None, method: str = "minmax", max_images: int = 64,
            progress=None, target: str | None = None, policy_pooling: str = "auto") -> dict:
    """Write the prepared graphs for ``precisions`` into ``package``; returns their manifest entries.

    ``calib_data`` (a folder of images at the package's input size) is required for INT8 and
    gives the accuracy check for both; FP16 without images is prepared unchecked.
    ``policy_pooling`` ("auto", "shift", "pool") is the heads' window formulation; "auto" is
    the ``target``'s where exact, and the package's own without a target.
    """
    from mesc.ranges import check_int

    check_int("--max-images", max_images, 1)
    onnx = require("onnx")
    say = progress or (lambda msg: None)
    pkg = Package.load(package)
    bad = [p for p in precisions if p not in PREPARED]
    if bad or not precisions:
        raise MescError(f"--precision {','.join(bad) or '(none)'}: prepared precisions are {', '.join(PREPARED)}")
    if "int8" in precisions and not calib_data:
        raise MescError("INT8 needs calibration images: pass --calib-data FOLDER (images at the export size)")
    from mesc.exporters.policy.pooling import HeadRepooler, package_poolings

    chosen = package_poolings(pkg, policy_pooling, target)
    repool = HeadRepooler(pkg, chosen)
    refuse_inside_generated(pkg.root, [f"onnx_{p}" for p in precisions], [("--calib-data", calib_data)])
    batches, paths = ([], [])
    if calib_data:
        batches, paths = load_calibration_batches(calib_data, pkg.input, max_images=max_images)
    results = {}
    for prec in precisions:
        t0 = time.perf_counter()
        feeds = segment_inputs(pkg, batches) if prec == "int8" else None
        rel_dir = f"onnx_{prec}"
        with pkg.staging(rel_dir) as tmp:
            files, counts = {}, {}
            for seg in pkg.segments:
                say(f"{prec}: {seg.name}")
                where = f"segment {seg.name} ({prec})"
                model = repool(onnx.load(str(pkg.path(seg.file))), seg)
                named_nodes(model, seg.name)
                if seg.kind == "entry":
                    # kept FP32 with its uint8 input: its float32 division must round as the host's
                    # normalisation does, and it is a handful of element-wise ops (nothing to gain)
                    out = model
                elif prec == "fp16":
                    from mesc.calibration.precision.fp16 import to_fp16

                    out = to_fp16(model, exit_tails(pkg, model, seg), where)
                else:
                    from mesc.calibration.precision.int8 import check_qdq, quantize_segment

                    tail = exit_tails(pkg, model, seg)
                    out = quantize_segment(model, feeds[seg.name], tail, method, where)
                    counts[seg.name] = check_qdq(out, tail, where)
                name = f"{seg.name}.onnx"
                onnx.save(out, str(tmp / name))
                files[seg.name] = str(tmp / name)
            calib_s = time.perf_counter() - t0
            say(f"{prec}: accuracy check on {len(paths)} images")
            accuracy = compare_exits(pkg, files, batches, fake_quant=prec == "int8") if batches else None
            entry = {
                "segments": {s: f"{rel_dir}/{s}.onnx" for s in files},
                "method": method if prec == "int8" else "onnxconverter-common float16 (policy tail, Resize FP32)",
                "images": len(paths),
                "calibration_seconds": round(calib_s, 2),
                "accuracy": accuracy,  # against the FP32 package's labels, ONNX Runtime CPU
            }
            if chosen:
                entry["policy_pooling"] = chosen  # exit -> the MESS windows its prepared head computes
            if counts:
                entry["qdq"] = counts
            pkg.install_dir(tmp, rel_dir,
                            update=lambda m, e=entry, p=prec: m.setdefault("precisions", {}).__setitem__(p, e))
        results[prec] = entry
    return results


def format_report(results: dict) -> str:
    lines = []
    for prec, e in results.items():
        lines.append(f"{prec}: {len(e['segments'])} segments, {e['images']} images, "
                     f"{e['calibration_seconds']} s ({e['method']})")
        for ex, a in (e["accuracy"] or {}).items():
            lines.append(f"  {ex:12s} label agreement {a['agreement']:.4f}  mIoU vs FP32 {a['miou']:.4f}  "
                         f"max |logit err| {a['max_abs_logit_err']:.3g} (scale {a['logit_scale']:.3g})")
        if not e["accuracy"]:
            lines.append("  accuracy not checked (no --calib-data)")
    return "\n".join(lines)


__all__ = ["PREPARED", "prepare", "format_report"]
