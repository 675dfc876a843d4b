"""The numbers behind the verdicts: one backend's tensors and exit decisions against the reference's.

Both pipelines run the same batches: :class:`TensorStats` takes every segment's outputs
(``Pipeline.tensors``), :func:`compare_decisions` the input-dependent calls' exits.
"""

from __future__ import annotations

import numpy as np


class TensorStats:
    """Per exit (labels, logits, confidence) and per segment (every float output) errors,
    accumulated over batches."""

    def __init__(self, pkg):
        self.pkg = pkg
        self.exits = {ex.name: {"agree": 0, "pixels": 0, "max_abs_logit_err": 0.0, "logit_scale": 0.0,
                                   "max_confidence_err": 0.0 if ex.confidence else None}
                      for ex in pkg.exits}
        self.segments = {seg.name: {"max_abs_err": 0.0, "scale": 0.0} for seg in pkg.segments}

    def add(self, ref: dict, test: dict) -> None:
        for ex in self.pkg.exits:
            s = self.exits[ex.name]
            la, lb = ref[ex.logits], test[ex.logits].astype(np.float32)
            if ex.labels in ref:
                ya, yb = ref[ex.labels], test[ex.labels]
            else:  # no in-graph policy: the labels are the logits' argmax
                ya, yb = la.argmax(1), lb.argmax(1)
            s["agree"] += int(np.count_nonzero(ya == yb))
            s["pixels"] += ya.size
            s["max_abs_logit_err"] = max(s["max_abs_logit_err"], float(np.max(np.abs(la - lb))))
            s["logit_scale"] = max(s["logit_scale"], float(np.max(np.abs(la))))
            if ex.confidence:
                err = float(np.max(np.abs(ref[ex.confidence] - test[ex.confidence].astype(np.float32))))
                s["max_confidence_err"] = max(s["max_confidence_err"], err)
        for seg in self.pkg.segments:
            s = self.segments[seg.name]
            for out in seg.outputs:
                a = ref[out.name]
                if not np.issubdtype(a.dtype, np.floating):
                    continue
                s["max_abs_err"] = max(s["max_abs_err"], float(np.max(np.abs(a - test[out.name].astype(a.dtype)))))
                s["scale"] = max(s["scale"], float(np.max(np.abs(a))))

    def exit_report(self) -> dict:
        return {name: {"agreement": s["agree"] / max(s["pixels"], 1),
                       "max_abs_logit_err": s["max_abs_logit_err"], "logit_scale": s["logit_scale"],
                       "rel_logit_err": _relative(s["max_abs_logit_err"], s["logit_scale"]),
                       "max_confidence_err": s["max_confidence_err"]}
                for name, s in self.exits.items()}

    def segment_report(self) -> dict:
        return {name: {"max_abs_err": s["max_abs_err"], "scale": s["scale"],
                       "rel_err": _relative(s["max_abs_err"], s["scale"])}
                for name, s in self.segments.items()}


def _relative(err: float, scale: float) -> float:
    return err / scale if scale > 0 else err


def compare_decisions(pkg, ref_results: list, test_results: list, margin: float, first: int = 0) -> dict:
    """Which images left at another exit than the reference's, and whether that is explained by
    a reference confidence within ``margin`` of th_img at the earlier of the two exits
    (a borderline image, where a rounding difference may tip the decision either way)."""
    names = [ex.name for ex in pkg.exits]
    same, differ = 0, []
    for i, (a, b) in enumerate(zip(ref_results, test_results)):
        if a.exit == b.exit:
            same += 1
            continue
        at = names[min(names.index(a.exit), names.index(b.exit))]
        c = a.confidences.get(at)
        th = pkg.policy(at).get("th_img")  # the FFT policy reads a range (lo, hi) instead
        differ.append({"image": first + i, "reference_exit": a.exit, "exit": b.exit, "at": at,
                       "reference_confidence": c, "confidence": b.confidences.get(at), "th_img": th,
                       "borderline": c is not None and any(abs(c - t) <= margin for t in (
                           [th] if th is not None else [pkg.policy(at)["lo"], pkg.policy(at)["hi"]]))})
    return {"images": len(ref_results), "same": same, "differ": differ}
