"""The splitter: partition by data dependencies, live sets, exit subsets, numerics."""

import numpy as np
import pytest
import torch

from mesc.exporters.export import ExportOptions, export
from mesc.exporters.partition import partition
from mesc.exporters.trace import trace_model
from mesc.exporters.verify import run_chain
from toys import DictNet, SkipNet


def _split(model, selected):
    x = torch.randn(model.default_input_shape)
    traced = trace_model(model.eval(), x)
    segments, _ = partition(traced, selected)
    return traced, segments


def _needed_nodes(traced, selected):
    """Every non-constant node some selected exit depends on (computed independently)."""
    todo = [traced.exit_nodes[k] for k in selected]
    seen = set()
    while todo:
        n = todo.pop()
        if n in seen or n.op in ("placeholder", "get_attr"):
            continue
        seen.add(n)
        todo.extend(n.all_input_nodes)
    return seen


@pytest.mark.parametrize("selected", [[0, 1, 2], [0, 2], [1, 2], [2], [0, 1]])
def test_every_needed_node_runs_exactly_once(selected):
    traced, segments = _split(SkipNet(), selected)
    placed = [n for s in segments for n in s.nodes]
    assert len(placed) == len(set(placed)), "a node runs in two segments"
    assert set(placed) == _needed_nodes(traced, selected)


def test_segment_inputs_come_from_earlier_segments_or_the_image():
    _, segments = _split(SkipNet(), [0, 1, 2])
    produced = {"x"}
    for seg in segments:
        for a in seg.inputs:
            assert a.name in produced, f"{seg.name} reads {a.name} before it exists"
        produced |= {n.name for n in seg.outputs}
    assert [s.name for s in segments] == ["chunk0", "head0", "chunk1", "head1", "head2"]


def test_skip_connection_crosses_two_cuts():
    _, segments = _split(SkipNet(), [0, 1, 2])
    seg = {s.name: s for s in segments}
    skip = seg["chunk0"].outputs[0]
    # stage-1 features feed exit 0's head, the next chunk, and (over exit 1) the final head
    assert skip in seg["head0"].inputs and skip in seg["chunk1"].inputs and skip in seg["head2"].inputs
    assert skip not in seg["head1"].inputs
    assert len(seg["head2"].inputs) == 2


def test_dropping_an_exit_merges_its_chunk_into_the_next_segment():
    _, full = _split(SkipNet(), [0, 1, 2])
    _, sub = _split(SkipNet(), [0, 2])
    f = {s.name: {n.name for n in s.nodes} for s in full}
    s = {s.name: {n.name for n in s.nodes} for s in sub}
    assert set(s) == {"chunk0", "head0", "head2"}
    assert s["chunk0"] == f["chunk0"]
    assert s["head2"] == f["chunk1"] | f["head2"]  # exit 1's chunk joins the final segment; its head is gone


def test_dropping_the_first_exit_merges_forward():
    _, full = _split(SkipNet(), [0, 1, 2])
    _, sub = _split(SkipNet(), [1, 2])
    f = {s.name: {n.name for n in s.nodes} for s in full}
    s = {s.name: {n.name for n in s.nodes} for s in sub}
    assert set(s) == {"chunk1", "head1", "head2"}
    assert s["chunk1"] == f["chunk0"] | f["chunk1"]


@pytest.mark.parametrize("model_cls,selected", [(SkipNet, None), (SkipNet, [0, 2]), (DictNet, [1, 2])])
def test_chained_onnx_reproduces_each_exit(tmp_path, model_cls, selected):
    torch.manual_seed(0)
    model = model_cls().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(exits=selected, policy=None, verify=False))
    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(x)
    ref = list(ref.values()) if isinstance(ref, dict) else ref
    env = run_chain(pkg, x.numpy())
    kept = selected if selected is not None else [0, 1, 2]
    assert [e.index for e in pkg.exits] == kept
    for ex in pkg.exits:
        want = ref[ex.index].numpy()
        got = env[ex.logits]
        assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    if model_cls is DictNet:
        assert [e.name for e in pkg.exits] == ["mid", "final"]


def test_dynamic_batch_runs_at_other_batch_sizes(tmp_path):
    model = SkipNet().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(policy=None, dynamic_batch=True))
    assert pkg.input.shape[0] == "batch"
    x = torch.randn(3, 3, 32, 64)
    env = run_chain(pkg, x.numpy())
    with torch.no_grad():
        ref = model(x)
    np.testing.assert_allclose(env["exit2_logits"], ref[2].numpy(), atol=1e-4 * float(ref[2].abs().max()))
    assert pkg.manifest["verification"]["exit2"]["max_abs_err"] >= 0


def test_output_strides_are_measured():
    traced, _ = _split(SkipNet(), [0, 1, 2])
    assert traced.strides == [2, 4, 2]
