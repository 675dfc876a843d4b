"""The ``fft`` builder: mean magnitude of the unnormalised 2-D DFT of the top-1 map. Numpy
reference: :mod:`mesc.policy.fft`.

TensorRT 8.x has no DFT operator (ONNX DFT is opset 17 and TensorRT parses it only from 10.x,
and not on DLA), so the DFT is two MatMuls with constant cos/sin matrices: ``F = A_H X A_W``
with ``A_n[j, k] = exp(-2 pi i jk/n)``, real and imaginary parts from four real products. It
stays in the graph (not a host step) so that only 4 bytes an image cross to the host, as for
MESS; it costs ``2 H W (H + W)`` multiply-adds an image and ``2 (H^2 + W^2)`` float32
constants, small at the exit's native resolution (``--policy-at native``), a few MB at
512 x 1024. Needs static H and W (the matrices' size).
"""

from __future__ import annotations

import math

import numpy as np

from mesc.errors import MescError
from mesc.exporters.policy.builder import GraphBuilder
from mesc.exporters.policy.graph import append_score
from mesc.exporters.policy.registry import register_builder


def dft_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of the n-point DFT, ``A[j, k] = cos(2 pi jk/n) - i sin(2 pi jk/n)``, float32;
    jk reduced mod n first so that large sizes keep full accuracy."""
    k = np.arange(n, dtype=np.int64)
    angle = 2.0 * math.pi * ((k[:, None] * k[None, :]) % n) / n
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def _fft_mean_magnitude(b: GraphBuilder, top1: str, h: int, w: int, out: str) -> None:
    """mean |DFT2(top1)| over the H x W coefficients, N (top1: N,1,H,W)."""
    ch, sh = dft_matrices(h)
    cw, sw = dft_matrices(w)
    # rank-4 constants: TensorRT broadcasts MatMul over leading dims of size 1
    ch, sh, cw, sw = (b.const(name, m[None, None], np.float32)
                      for name, m in (("dft_cos_h", ch), ("dft_sin_h", sh), ("dft_cos_w", cw), ("dft_sin_w", sw)))
    p, q = b.op("MatMul", [ch, top1]), b.op("MatMul", [sh, top1])  # (C_H - i S_H) X = P - i Q
    # (P - iQ)(C_W - i S_W) = (P C_W - Q S_W) - i (Q C_W + P S_W)
    re = b.op("Sub", [b.op("MatMul", [p, cw]), b.op("MatMul", [q, sw])])
    im = b.op("Add", [b.op("MatMul", [q, cw]), b.op("MatMul", [p, sw])])
    mag = b.op("Sqrt", [b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])])])
    b.reduce("ReduceMean", mag, [1, 2, 3], keepdims=0, out=out)


def build(model, logits, prefix, policy, labels=True, net=None):
    def score(b, head, out):
        _, _, h_dim, w_dim = head.dims
        if not (isinstance(h_dim, int) and isinstance(w_dim, int)):
            raise MescError(f"the fft policy needs static H and W in {logits!r} (the DFT matrices' size), "
                            f"got {head.dims}")
        _fft_mean_magnitude(b, head.confidence("top1"), h_dim, w_dim, out)

    return append_score(model, logits, prefix, score, labels)


register_builder("fft", build)

__all__ = ["build", "dft_matrices"]
