"""The accuracy check of prepared graphs: per exit, how far their labels and logits are from FP32."""

from __future__ import annotations

import numpy as np

from mesc.runtime.backends.onnxrt.chain import OrtChain
from mesc.evaluation.metrics import label_miou


def compare_exits(pkg, files: dict, batches, fake_quant: bool = False) -> dict:
    """Per exit: label agreement and mIoU of the prepared graphs against FP32 labels, max logit error."""
    ref, test = OrtChain(pkg), OrtChain(pkg, files, fake_quant=fake_quant)
    stats = {ex.name: {"agree": 0, "pixels": 0, "miou": [], "max_abs_logit_err": 0.0, "logit_scale": 0.0,
                          "max_confidence_err": 0.0 if ex.confidence else None}
             for ex in pkg.exits}
    for batch in batches:
        a, b = ref.run(batch), test.run(batch)
        for ex in pkg.exits:
            s = stats[ex.name]
            la, lb = a[ex.logits], b[ex.logits].astype(np.float32)
            ya, yb = la.argmax(1), lb.argmax(1)
            s["agree"] += int(np.count_nonzero(ya == yb))
            s["pixels"] += ya.size
            s["miou"].extend(label_miou(yb[i], ya[i]) for i in range(ya.shape[0]))
            s["max_abs_logit_err"] = max(s["max_abs_logit_err"], float(np.max(np.abs(la - lb))))
            s["logit_scale"] = max(s["logit_scale"], float(np.max(np.abs(la))))
            if ex.confidence:
                err = float(np.max(np.abs(a[ex.confidence].astype(np.float32) - b[ex.confidence])))
                s["max_confidence_err"] = max(s["max_confidence_err"], err)
    return {name: {"agreement": round(s["agree"] / max(s["pixels"], 1), 5),
                   "miou": round(float(np.mean(s["miou"])), 5),
                   "max_abs_logit_err": round(s["max_abs_logit_err"], 5),
                   "logit_scale": round(s["logit_scale"], 5),
                   "max_confidence_err": None if s["max_confidence_err"] is None else round(s["max_confidence_err"], 5)}
            for name, s in stats.items()}
