"""Check that the exported segments, chained in ONNX Runtime, reproduce the eager model."""

from __future__ import annotations

import numpy as np

from mesc.errors import ExportError
from mesc.lazy import require
from mesc.runtime.backends.onnxrt.chain import run_chain

# float32 chains of convolutions differ from eager PyTorch by rounding only; anything larger is
# a wrong split or a wrong export, not noise.
REL_TOL = 1e-4


def flatten_exits(out) -> list:
    """The model's exits' logits in the manifest's order: point by point, each point's candidate
    heads in list order (the model contract of :mod:`mesc.exporters.trace`)."""
    points = list(out.values()) if isinstance(out, dict) else list(out)
    return [t for p in points for t in (p if isinstance(p, (list, tuple)) else [p])]


def verify_against_model(pkg, net, shape, batches, seed: int = 1) -> dict:
    torch = require("torch")
    report = {}
    gen = torch.Generator().manual_seed(seed)
    for b in batches:
        x = torch.randn((b, *shape[1:]), generator=gen)
        with torch.no_grad():
            ref = net(x)
        ref = flatten_exits(ref)
        try:
            env = run_chain(pkg, x.numpy())
        except Exception as err:
            hint = " (does the model's shape arithmetic use the batch size?)" if b != shape[0] else ""
            raise ExportError(f"the exported segments fail to run at batch {b}{hint}: {err}") from err
        for ex in pkg.exits:
            want = ref[ex.index].numpy()
            got = env[ex.logits]
            if got.shape != want.shape:
                raise ExportError(f"exit {ex.name}: ONNX gives shape {got.shape}, PyTorch {want.shape} at batch {b}")
            err = float(np.max(np.abs(got - want)))
            scale = float(np.max(np.abs(want))) or 1.0
            if not err <= REL_TOL * scale:
                raise ExportError(
                    f"exit {ex.name}: the chained ONNX segments differ from the PyTorch model by {err:.3g} "
                    f"(allowed {REL_TOL * scale:.3g}) at batch {b}"
                )
            r = report.setdefault(ex.name, {"max_abs_err": 0.0, "scale": scale})
            r["max_abs_err"] = max(r["max_abs_err"], err)
    return report
