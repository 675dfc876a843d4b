"""The graph captures: torch.export (default) and torch.fx, the errors that name the cause, and
ONNX segments at the opsets of both TensorRT generations."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mesc.errors import ExportError
from mesc.exporters.export import ExportOptions, export
from mesc.exporters.verify import run_chain
from toys import DataDependent, SingleOutput, SkipNet, TokenNet

TOY = str(Path(__file__).parents[1] / "toys.py")


def _reproduces_every_exit(model, pkg, batch):
    x = torch.randn(batch, 3, 32, 64, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        ref = model(x)
    env = run_chain(pkg, x.numpy())
    assert [e.index for e in pkg.exits] == list(range(len(ref)))
    for ex in pkg.exits:
        want = ref[ex.index].numpy()
        assert np.max(np.abs(env[ex.logits] - want)) <= 1e-4 * np.max(np.abs(want)), ex.name


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_a_model_fx_cannot_trace_splits_and_reproduces_every_exit(tmp_path, dynamic_batch):
    model = TokenNet().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(dynamic_batch=dynamic_batch))
    assert pkg.manifest["source"]["capture"] == "export"
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", "head0", "chunk1", "head1", "head2"]
    _reproduces_every_exit(model, pkg, batch=3 if dynamic_batch else 1)


def test_fx_names_shape_unpacking_and_points_to_torch_export(tmp_path):
    with pytest.raises(ExportError) as err:
        export(TokenNet().eval(), tmp_path / "pkg", options=ExportOptions(capture="fx"))
    msg = str(err.value)
    assert "shape arithmetic torch.fx cannot trace" in msg and "data-dependent" not in msg
    assert "toys.py:" in msg and "hidden_shape = (*t.shape[:-1], -1, self.head_dim)" in msg
    assert "--capture export" in msg


@pytest.mark.parametrize("capture,strict", [("export", False), ("export", True), ("fx", False)])
def test_data_dependent_control_flow_is_named_as_such(tmp_path, capture, strict):
    with pytest.raises(ExportError) as err:
        export(DataDependent(), tmp_path / "pkg",
               options=ExportOptions(capture=capture, strict=strict, input_shape=(1, 3, 8, 8), policy=None))
    msg = str(err.value)
    assert "data-dependent control flow" in msg and "toys.py:" in msg and "y.mean() > 0" in msg
    assert "torch.where" in msg
    assert not (tmp_path / "pkg").exists()


class _FixedBatch(SingleOutput):
    def forward(self, x):
        y = self.c(x)
        return [y.reshape(1, 4, 8, 8), y + 1]  # the batch size written as a constant


class _NumpyInForward(SingleOutput):
    def forward(self, x):
        y = self.c(x)
        return [torch.from_numpy(y.detach().numpy() * 2), y]


@pytest.mark.parametrize("model,opts,kind,line", [
    (_FixedBatch, dict(dynamic_batch=True), "fixes the batch size", None),
    (_NumpyInForward, {}, "an operation the capture does not support", "y.detach().numpy()"),
])
def test_other_capture_failures_name_their_kind_and_line(tmp_path, model, opts, kind, line):
    with pytest.raises(ExportError) as err:
        export(model(), tmp_path / "pkg", options=ExportOptions(input_shape=(1, 3, 8, 8), policy=None, **opts))
    msg = str(err.value)
    assert kind in msg and "To fix:" in msg
    if line:
        assert "test_capture.py:" in msg and line in msg


def test_capture_options_are_checked(tmp_path):
    with pytest.raises(ExportError, match="--capture must be"):
        export(SkipNet().eval(), tmp_path / "pkg", options=ExportOptions(capture="jit"))
    with pytest.raises(ExportError, match="--strict .* goes with --capture export"):
        export(SkipNet().eval(), tmp_path / "pkg", options=ExportOptions(capture="fx", strict=True))


@pytest.mark.parametrize("capture,strict", [("export", True), ("fx", False)])
def test_strict_export_and_fx_give_the_default_capture_s_segments(tmp_path, capture, strict):
    model = SkipNet().eval()
    base = export(model, tmp_path / "a", options=ExportOptions(policy=None))
    other = export(model, tmp_path / "b", options=ExportOptions(policy=None, capture=capture, strict=strict))
    assert other.manifest["source"]["capture"] == capture
    assert _boundaries(other) == _boundaries(base)


def _boundaries(pkg):
    """Per segment: its name, how many tensors cross into and out of it, and their shapes."""
    return [(s.name, [t.shape for t in s.inputs], [t.shape for t in s.outputs], s.flops)
            for s in pkg.segments]


@pytest.mark.parametrize("opset", [17, 18, 20])
@pytest.mark.parametrize("model_cls,policy,policy_at", [(SkipNet, "top1", "output"), (TokenNet, "entropy", "native")])
def test_segments_check_and_run_at_the_opsets_of_both_tensorrt_generations(tmp_path, opset, model_cls, policy,
                                                                            policy_at):
    import onnx

    model = model_cls().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(opset=opset, policy=policy, policy_at=policy_at,
                                                                dynamic_batch=True))
    for seg in pkg.segments:
        graph = onnx.load(str(pkg.path(seg.file)))
        onnx.checker.check_model(graph, full_check=True)
        assert graph.opset_import[0].version == opset
    assert pkg.manifest["source"]["opset"] == opset
    _reproduces_every_exit(model, pkg, batch=2)  # export itself verified batches 1 and 2 against the eager model


def test_cli_capture_fx(tmp_path):
    from click.testing import CliRunner

    from mesc.cli import cli
    from mesc.package import Package

    out = tmp_path / "pkg"
    res = CliRunner().invoke(cli, ["export", "-m", f"{TOY}:skipnet", "--capture", "fx", "--policy", "none",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert Package.load(out).manifest["source"]["capture"] == "fx"
