"""Every reference model splits into segments whose ONNX chain reproduces each selected exit."""

import numpy as np
import pytest
import torch

from mesc.exporters.export import ExportOptions, export
from mesc.exporters.verify import run_chain
from mesc.models import create

# narrow, shallow versions: the split logic is the same as at full width, the test stays fast
NARROW = {
    "drn50-fcn": dict(base_width=8, blocks=(1, 1, 2, 1)),
    "drn50-deeplab": dict(base_width=8, blocks=(1, 1, 2, 1)),
    "mbv2-fcn": dict(width_mult=0.25),
    "mbv2-deeplab": dict(width_mult=0.25),
    "hrnet18": dict(width=6, stem_width=8, stage1_blocks=1, modules=(1, 1, 1), branch_blocks=1),
    "unet-skip": dict(base_width=4),
}
CASES = [("drn50-fcn", None), ("drn50-fcn", [0, 3]), ("drn50-deeplab", [1, 2, 3]), ("mbv2-fcn", None),
         ("mbv2-deeplab", [0, 2, 3]), ("hrnet18", None), ("hrnet18", [1, 3]), ("unet-skip", None),
         ("unet-skip", [0, 2])]


@pytest.mark.parametrize("name,selected", CASES)
def test_reference_model_chain_matches_eager(tmp_path, name, selected):
    torch.manual_seed(0)
    model = create(name, num_classes=5, **NARROW[name])
    pkg = export(model, tmp_path / "pkg",
                 options=ExportOptions(input_shape=(2, 3, 64, 128), exits=selected, verify=False))
    x = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
    env = run_chain(pkg, x.numpy())
    kept = selected or list(range(len(ref)))
    assert [e.index for e in pkg.exits] == kept
    for ex in pkg.exits:
        want = ref[ex.index].numpy()
        assert np.max(np.abs(env[ex.logits] - want)) <= 1e-4 * np.max(np.abs(want)), ex.name
        assert env[ex.labels].shape == (2, 64, 128) and env[ex.labels].dtype == np.int32
        np.testing.assert_array_equal(env[ex.labels], want.argmax(1))
        assert env[ex.confidence].shape == (2,)


def test_hrnet_cuts_carry_several_branch_tensors(tmp_path):
    model = create("hrnet18", num_classes=5, **NARROW["hrnet18"])
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(input_shape=(1, 3, 64, 128), policy=None))
    live = {s.name: len(s.inputs) for s in pkg.segments}
    # stages 2..4 have 2..4 parallel branches; all of them cross the later cuts
    assert live["chunk2"] >= 2 and live["head3"] >= 3


def test_unet_skip_jumps_over_exits(tmp_path):
    model = create("unet-skip", num_classes=5, **NARROW["unet-skip"])
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(input_shape=(1, 3, 64, 128), policy=None))
    chunk0_out = {t.name for t in pkg.segment("chunk0").outputs}
    final_in = {t.name for t in pkg.segment(pkg.exits[-1].segment).inputs}
    assert chunk0_out & final_in, "the early skip tensor should feed the final exit directly"


@pytest.mark.parametrize("name", list(NARROW))
def test_both_captures_cut_reference_models_at_the_same_tensors(tmp_path, name):
    """torch.export (the default) and torch.fx give the same segments, cut tensors and FLOPs, and
    both pass the export's verification bound. A segment's inputs are listed in the order its
    graph first reads them, which may differ between the captures."""
    model = create(name, num_classes=5, **NARROW[name])
    cuts = {}
    for capture in ("export", "fx"):
        pkg = export(model, tmp_path / capture,
                     options=ExportOptions(input_shape=(1, 3, 64, 128), policy=None, capture=capture))
        cuts[capture] = [(s.name, sorted(t.shape for t in s.inputs), sorted(t.shape for t in s.outputs),
                          s.flops) for s in pkg.segments]
        assert all(v["max_abs_err"] <= 1e-4 * v["scale"] for v in pkg.manifest["verification"].values())
    assert cuts["export"] == cuts["fx"]
