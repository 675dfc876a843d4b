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


def verify_entry(pkg, shape, seed: int = 1) -> None:
    """The entry segment, on random uint8 images, must give bit for bit the float input that host
    normalisation gives (mesc.runtime.images.normalize): then a package gives the same labels
    whether its images are normalised on the device or on the host."""
    from mesc.runtime.images import normalize

    images = np.random.default_rng(seed).integers(0, 256, (shape[0], *shape[2:], shape[1]), dtype=np.uint8)
    got = run_chain(pkg, images)[pkg.input.name]
    want = np.stack([normalize(im, pkg.input.normalization) for im in images])
    if got.shape != want.shape or not np.array_equal(got, want):
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else None
        raise ExportError(f"the entry segment's normalisation differs from the host's ("
                          + (f"max |difference| {diff:.3g}" if diff is not None else
                             f"shape {got.shape}, host {want.shape}")
                          + "): uint8 input would give other results than float input")


def verify_against_model(pkg, net, shape, batches, seed: int = 1) -> dict:
    torch = require("torch")
    if pkg.entry is not None:
        verify_entry(pkg, shape, seed)
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
