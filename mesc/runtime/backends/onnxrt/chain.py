"""Every segment of a package on ONNX Runtime CPU, every tensor back by name.

One wrapper for the export check (the chain against the eager model) and for calibration
(segment inputs, prepared graphs against FP32). The sessions live as long as the chain, so
calibration pays for them once, not per batch.
"""

from __future__ import annotations

import numpy as np

from mesc.runtime.backends.onnxrt.loader import SessionsFromPackage
from mesc.runtime.backends.onnxrt.runner import OrtRunner
from mesc.runtime.devices import Device
from mesc.runtime.pipeline import Pipeline


class OrtChain:
    """``OrtChain(pkg, files={segment: path})``; ``run(batch)`` returns every tensor by name.

    ``files`` swaps any segment's graph for a prepared one (FP16, INT8); ``fake_quant`` turns
    graph optimisation off so Q/DQ run as separate float ops, as TensorRT computes them.
    """

    def __init__(self, pkg, files: dict | None = None, threads: int | None = None, fake_quant: bool = False):
        cpu = Device("cpu")
        loader = SessionsFromPackage(pkg, cpu, threads=threads, files=files, optimize=not fake_quant)
        self.pipe = Pipeline(pkg, OrtRunner(loader, cpu))

    def run(self, batch: np.ndarray, keep=None) -> dict:
        env = self.pipe.tensors(batch)
        if keep is not None:
            env = {k: v for k, v in env.items() if k in keep}
        return env

    def close(self) -> None:
        self.pipe.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_chain(pkg, batch: np.ndarray) -> dict:
    """One batch through a chain opened and closed for it."""
    with OrtChain(pkg) as chain:
        return chain.run(batch)
