"""Run a package's segments on ONNX Runtime CPU with cached sessions.

The sessions live across images and any segment's graph can be swapped for a prepared one
(FP16, INT8), which calibration and the accuracy check need.
"""

from __future__ import annotations

import numpy as np


class OrtChain:
    """``OrtChain(pkg, files={segment: path})``; ``run(batch)`` returns every tensor by name.

    The runtime's ONNX Runtime chain on the CPU, with any segment's graph swapped for a
    prepared one (FP16, INT8); ``fake_quant`` turns graph optimisation off so Q/DQ run as
    separate float ops, as TensorRT computes them.
    """

    def __init__(self, pkg, files: dict | None = None, threads: int | None = None, fake_quant: bool = False):
        from mesc.runtime.devices import Device
        from mesc.runtime.pipeline import Pipeline
        from mesc.runtime.runners.onnxrt import OrtRunner

        self.pipe = Pipeline(pkg, OrtRunner(pkg, Device("cpu"), threads=threads, files=files,
                                            optimize=not fake_quant))

    def run(self, batch: np.ndarray, keep=None) -> dict:
        env = self.pipe.tensors(batch)
        if keep is not None:
            env = {k: v for k, v in env.items() if k in keep}
        return env
