"""mit-b0, the transformer reference model: forward contract under both captures (torch.fx and
torch.export), exit placement by FLOP share on the stage outputs, export through `mesc export`
with every exit reproduced, and a `mesc train` smoke run."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mesc.models as models
from mesc.datasets import synthetic
from mesc.cli import cli
from mesc.errors import ModelLoadError
from mesc.exporters.verify import REL_TOL, run_chain
from mesc.models.mit import AllMLPDecoder, MiTStage
from mesc.models.placement import choose_exit_points
from mesc.package import Package
from test_model_zoo import _real_block_flops
from tiny_models import TINY as ZOO_TINY

H, W = 64, 128
TINY = ZOO_TINY["mit-b0"]


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return models.create("mit-b0", **{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(7))


def test_full_size_architecture():
    m = models.create("mit-b0")
    assert [s.out_channels for s in m.blocks] == [32, 64, 160, 256]
    assert [len(s.blocks) for s in m.blocks] == [2, 2, 2, 2]
    assert [b.attn.sr.stride[0] if b.attn.reduces else 1 for s in m.blocks for b in s.blocks] == [8, 8, 4, 4, 2, 2, 1, 1]
    assert [s.blocks[0].attn.heads for s in m.blocks] == [1, 2, 5, 8]
    # overlapping patch embeddings: the kernel exceeds the stride
    assert [(s.embed.kernel_size[0], s.embed.stride[0]) for s in m.blocks] == [(7, 4), (3, 2), (3, 2), (3, 2)]
    assert isinstance(m.exits[-1], AllMLPDecoder) and m.exits[-1].classify.in_channels == 256
    assert m.default_input_shape == (1, 3, 512, 1024) and m.num_classes == 19
    # MiT-B0's encoder has 3.3 M parameters, its decode head 0.4 M
    encoder = sum(p.numel() for p in m.blocks.parameters())
    assert 3.2e6 < encoder < 3.5e6, encoder


def test_forward_shapes_and_both_captures(x):
    m = tiny()
    with torch.no_grad():
        outs = m(x)
        assert [o.shape for o in outs] == [(2, 19, H, W)] * 4
        assert all(torch.isfinite(o).all() for o in outs)
        fx_outs = torch.fx.symbolic_trace(m)(x)
        exported = torch.export.export(m, (x,), strict=False).module()(x)
    assert all(torch.equal(a, b) for a, b in zip(outs, fx_outs))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(outs, exported))
    # early exits at the stage outputs' strides, the decode head at stage 1's 1/4
    assert m.output_strides == (4, 8, 16, 4)
    assert [type(e).__name__ for e in m.exits] == ["ExitHead"] * 3 + ["AllMLPDecoder"]


def test_stages_take_any_multiple_of_32_and_keep_the_batch_free():
    stage = MiTStage(3, 8, 1, 1, 8, 4, 7, 4).eval()
    with torch.no_grad():
        for shape in ((1, 3, 32, 32), (3, 3, 64, 96)):
            out = stage(torch.randn(shape))
            assert out.shape == (shape[0], 8, shape[2] // 4, shape[3] // 4)


def test_exits_on_stage_outputs_at_flop_shares():
    m = tiny()
    assert m.exit_points == (0, 1, 2, 3)   # default: after stages 1-3, the decode head after 4
    # placement profiles at the full default shape: attention's N x N/sr^2 scores make the
    # shares of a scaled-down input wrong
    real = _real_block_flops(m, m.default_input_shape)
    assert list(m.block_flops) == real
    small = _real_block_flops(m, (1, 3, 32, 64))
    assert [f / sum(small) for f in small] != pytest.approx([f / sum(real) for f in real], abs=0.01)
    for n in (2, 3):
        placed = tiny(num_exits=n)
        assert list(placed.exit_points) == choose_exit_points(real, n, first_block=0)
        assert len(placed(torch.zeros(1, 3, H, W))) == n
    assert tiny(exit_points=[1]).exit_points == (1, 3)


def test_exit_configs_and_bad_arguments():
    m = tiny(exits=[{"reduction": 2, "extra_blocks": 0, "rapid_dilation": False, "head": "deeplab"}] * 3)
    assert [c.head for c in m.exit_configs[:-1]] == ["deeplab"] * 3 and m.exit_configs[-1] is None
    with pytest.raises(ModelLoadError, match="heads"):
        tiny(heads=(3, 2, 3, 4))
    with pytest.raises(ModelLoadError, match="one entry per stage"):
        tiny(depths=(1, 1, 1))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("flags,kept", [
    ((), [0, 1, 2, 3]),
    pytest.param(("--policy-at", "native"), [0, 1, 2, 3], marks=pytest.mark.slow),
    pytest.param(("--exits", "1,3"), [1, 3], marks=pytest.mark.slow),
    (("--dynamic-batch",), [0, 1, 2, 3]),
])
def test_mesc_export_reproduces_every_exit(tmp_path, flags, kept):
    out = tmp_path / "pkg"
    res = run("export", "--model", "mit-b0", "--num-classes", 5, "--input-shape", f"1x3x{H}x{W}", *flags, "-o", out)
    assert res.exit_code == 0, res.output
    pkg = Package.load(out)
    assert [e.index for e in pkg.exits] == kept
    # the export compared every kept exit's chained ONNX logits with the eager model's
    verification = pkg.manifest["verification"]
    assert set(verification) == {f"exit{k}" for k in kept}
    assert all(v["max_abs_err"] <= REL_TOL * v["scale"] for v in verification.values())
    # the decode head reads stages 1-3 across the cuts before it (stage 4 runs in its segment)
    final_inputs = [t.name for t in pkg.segment(pkg.exits[-1].segment).inputs
                    if not t.name.endswith("_th_pix")]
    assert len(final_inputs) == (3 if kept == [0, 1, 2, 3] else 2)
    if "native" in flags:
        assert {ex.policy["at"] for ex in pkg.exits} == {"native"}
        assert sum(s.kind == "tail" for s in pkg.segments) == len(kept)
    if "--dynamic-batch" in flags:
        # verified at batches 1 and 2 by the export; any other batch runs too
        assert pkg.manifest["input"]["shape"][0] == "batch"
        env = run_chain(pkg, np.random.default_rng(0).standard_normal((3, 3, H, W)).astype(np.float32))
        for ex in pkg.exits:
            assert env[ex.logits].shape == (3, 5, H, W)
            np.testing.assert_array_equal(env[ex.labels], env[ex.logits].argmax(1))


def test_mesc_train_smoke(tmp_path):
    scenes = synthetic.generate(tmp_path / "train", 6, seed=1, size=(64, 64), difficulty=(0, 0.4))
    ckpt = tmp_path / "mit.pt"
    res = run("train", "--model", "mit-b0", "--data", scenes, "--epochs1", 1, "--epochs2", 1, "--batch", 3,
              "--threads", 1, "-o", ckpt)
    assert res.exit_code == 0, res.output
    assert "4 exits" in res.output
    trained = models.create("mit-b0", checkpoint=str(ckpt))
    with torch.no_grad():
        outs = trained(torch.zeros(1, 3, 64, 64))
    assert len(outs) == 4 and all(torch.isfinite(o).all() for o in outs)
    assert json.loads(json.dumps(trained.exit_points)) == [0, 1, 2, 3]
