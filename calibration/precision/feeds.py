"""INT8 calibration feeds: each segment's inputs as the FP32 segments before it produce them."""

from __future__ import annotations

import numpy as np

from mesc.runtime.backends.onnxrt.chain import OrtChain


def th_pix_feeds(pkg) -> dict:
    return {ex.th_pix_input: np.array([ex.policy["th_pix"]], np.float32)
            for ex in pkg.exits if ex.th_pix_input}


def segment_inputs(pkg, batches) -> dict[str, list[dict]]:
    """Each segment's input feeds for each batch (float32, normalised), as the FP32 segments
    before it produce them. The entry segment has none: it stays FP32 and needs no calibration."""
    chain = OrtChain(pkg)
    segments = [seg for seg in pkg.segments if seg.kind != "entry"]
    wanted = {t.name for seg in segments for t in seg.inputs}
    envs = [chain.run(b, keep=wanted) for b in batches]
    th = th_pix_feeds(pkg)
    return {seg.name: [{t.name: env.get(t.name, th.get(t.name)) for t in seg.inputs}
                          for env in envs]
            for seg in segments}
