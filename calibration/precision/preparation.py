"""``mesc prepare``: FP16 and explicit-INT8 ONNX graphs in the package, checked against FP32.

TensorRT >= 10 builds strongly typed, so a lower precision must already be in the graph. This
module writes ``onnx_fp16/`` and ``onnx_int8/`` beside ``onnx/``, records them under the
manifest's ``precisions`` with their accuracy against the FP32 package on the calibration
images (ONNX Runtime CPU), and never leaves a half-written directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import numpy as np

from mesc.errors import MescError
from mesc.lazy import require
from mesc.package import Package

PREPARED = ("fp16", "int8")


def exit_tails(pkg, model, seg) -> list[str]:
    """Nodes of segment ``seg`` to keep FP32 and unquantised: the policy after the exit's logits."""
    from mesc.calibration.chain import policy_tail

    if seg["kind"] == "chunk":
        return []
    ex = next((ex for ex in pkg.exits if seg["name"] in (ex["segment"], ex.get("tail"))), None)
    if ex is None:
        return []
    # the policy reads the native logits in the head (policy_at="native"), the labels the logits in the tail
    logits = ex["logits"] if seg["kind"] == "tail" else (ex.get("policy_logits") or ex["logits"])
    return policy_tail(model, logits)


def miou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of label map ``a`` against ``b`` over the classes either of them uses."""
    ious = []
    for c in np.union1d(np.unique(a), np.unique(b)):
        inter = np.count_nonzero((a == c) & (b == c))
        union = np.count_nonzero((a == c) | (b == c))
        ious.append(inter / union)
    return float(np.mean(ious)) if ious else 1.0


def compare_exits(pkg, files: dict, batches, fake_quant: bool = False) -> dict:
    """Per exit: label agreement and mIoU of the prepared graphs against FP32 labels, max logit error."""
    from mesc.calibration.chain import OrtChain

    ref, test = OrtChain(pkg), OrtChain(pkg, files, fake_quant=fake_quant)
    stats = {ex["name"]: {"agree": 0, "pixels": 0, "miou": [], "max_abs_logit_err": 0.0, "logit_scale": 0.0,
                          "max_confidence_err": 0.0 if ex.get("confidence") else None}
             for ex in pkg.exits}
    for batch in batches:
        a, b = ref.run(batch), test.run(batch)
        for ex in pkg.exits:
            s = stats[ex["name"]]
            la, lb = a[ex["logits"]], b[ex["logits"]].astype(np.float32)
            ya, yb = la.argmax(1), lb.argmax(1)
            s["agree"] += int(np.count_nonzero(ya == yb))
            s["pixels"] += ya.size
            s["miou"].extend(miou(yb[i], ya[i]) for i in range(ya.shape[0]))
            s["max_abs_logit_err"] = max(s["max_abs_logit_err"], float(np.max(np.abs(la - lb))))
            s["logit_scale"] = max(s["logit_scale"], float(np.max(np.abs(la))))
            if ex.get("confidence"):
                err = float(np.max(np.abs(a[ex["confidence"]].astype(np.float32) - b[ex["confidence"]])))
                s["max_confidence_err"] = max(s["max_confidence_err"], err)
    return {name: {"agreement": round(s["agree"] / max(s["pixels"], 1), 5),
                   "miou": round(float(np.mean(s["miou"])), 5),
                   "max_abs_logit_err": round(s["max_abs_logit_err"], 5),
                   "logit_scale": round(s["logit_scale"], 5),
                   "max_confidence_err": None if s["max_confidence_err"] is None else round(s["max_confidence_err"], 5)}
            for name, s in stats.items()}


def prepare(package, precisions=PREPARED, calib_data=None, method: str = "minmax", max_images: int = 64,
            progress=None) -> dict:
    """Write the prepared graphs for ``precisions`` into ``package``; returns their manifest entries.

    ``calib_data`` (a folder of images at the package's input size) is required for INT8 and
    gives the accuracy check for both; FP16 without images is prepared unchecked.
    """
    onnx = require("onnx")
    from mesc.calibration.chain import named_nodes, segment_inputs
    from mesc.calibration.images import load_calibration_batches

    say = progress or (lambda msg: None)
    pkg = Package.load(package)
    bad = [p for p in precisions if p not in PREPARED]
    if bad or not precisions:
        raise MescError(f"--precision {','.join(bad) or '(none)'}: prepared precisions are {', '.join(PREPARED)}")
    if "int8" in precisions and not calib_data:
        raise MescError("INT8 needs calibration images: pass --calib-data FOLDER (images at the export size)")
    batches, paths = ([], [])
    if calib_data:
        batches, paths = load_calibration_batches(calib_data, pkg.input, max_images=max_images)
    results = {}
    for prec in precisions:
        t0 = time.perf_counter()
        feeds = segment_inputs(pkg, batches) if prec == "int8" else None
        rel_dir = f"onnx_{prec}"
        tmp = tempfile.mkdtemp(prefix=f".{rel_dir}.tmp-", dir=pkg.root)
        try:
            files, counts = {}, {}
            for seg in pkg.segments:
                say(f"{prec}: {seg['name']}")
                where = f"segment {seg['name']} ({prec})"
                model = onnx.load(str(pkg.path(seg["file"])))
                named_nodes(model, seg["name"])
                tail = exit_tails(pkg, model, seg)
                if prec == "fp16":
                    from mesc.calibration.fp16 import to_fp16

                    out = to_fp16(model, tail, where)
                else:
                    from mesc.calibration.int8 import check_qdq, quantize_segment

                    out = quantize_segment(model, feeds[seg["name"]], tail, method, where)
                    counts[seg["name"]] = check_qdq(out, tail, where)
                name = f"{seg['name']}.onnx"
                onnx.save(out, f"{tmp}/{name}")
                files[seg["name"]] = f"{tmp}/{name}"
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
            if counts:
                entry["qdq"] = counts
            pkg.install_dir(tmp, rel_dir,
                            update=lambda m, e=entry, p=prec: m.setdefault("precisions", {}).__setitem__(p, e))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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
