"""docs/examples/hf_segformer.py: a Hugging Face SegFormer (random init, no download) wrapped as a
multi-exit model, exits on the encoder's hidden states. Skipped where transformers (the [hf]
extra) is absent."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")

from mesc.exporters.export import ExportOptions, export  # noqa: E402
from mesc.exporters.verify import REL_TOL  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "hf_segformer.py"
SHAPE = (1, 3, 64, 128)


def _example():
    spec = importlib.util.spec_from_file_location("hf_segformer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wrapper_follows_the_model_contract():
    torch.manual_seed(0)
    model = _example().build(num_classes=5)
    x = torch.randn(2, *SHAPE[1:])
    with torch.no_grad():
        outs = model(x)
        native = model.segformer(pixel_values=x).logits
        exported = torch.export.export(model, (x,), strict=False).module()(x)
    assert [o.shape for o in outs] == [(2, 5, *SHAPE[2:])] * 4
    assert [e.output_stride for e in model.exits] == [4, 8, 16]
    # the final exit is SegFormer's own decode head, upsampled to the input
    assert torch.equal(outs[-1], F.interpolate(native, size=SHAPE[2:], mode="bilinear", align_corners=False))
    assert all(torch.equal(a, b) for a, b in zip(outs, exported))


def test_mesc_export_reproduces_every_exit(tmp_path):
    pkg = export(f"{EXAMPLE}:build", tmp_path / "pkg", options=ExportOptions(input_shape=SHAPE), num_classes=5)
    verification = pkg.manifest["verification"]
    assert set(verification) == {"exit0", "exit1", "exit2", "exit3"}
    assert all(v["max_abs_err"] <= REL_TOL * v["scale"] for v in verification.values())
    assert np.all([s.flops > 0 for s in pkg.segments])
