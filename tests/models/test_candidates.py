"""Candidate exit heads (MESS exit-architecture search) on the model side, the rapid dilation
increase from the exit point's own dilation, and the backbone-only load of a stage-1 checkpoint."""

import pytest
import torch
import torch.nn as nn

from mesc import models
from mesc.errors import ModelLoadError
from mesc.models.candidates import DEFAULT_CANDIDATE_GRID, exit_names, with_candidate_heads
from mesc.models.demo import DEMO_EARLY_EXIT, DEMO_INPUT_SHAPE
from mesc.models.heads import CandidateExits, ExitConfig, extra_block_dilations
from mesc.models.placement import conv_dilation
from mesc.models.checkpoints import load_backbone_only


def spatial_dilations(module):
    return [m.dilation[0] for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]


def test_rapid_dilation_doubles_from_the_dilation_in_use():
    rapid = ExitConfig(reduction=1, extra_blocks=3, rapid_dilation=True)
    assert extra_block_dilations(rapid, 1) == (2, 4, 8)
    assert extra_block_dilations(rapid, 4) == (8, 16, 32)
    assert extra_block_dilations(ExitConfig(extra_blocks=2, rapid_dilation=True), 2) == (4, 8)
    # without the rapid increase the extra blocks stay undilated, as before
    assert extra_block_dilations(ExitConfig(extra_blocks=2, rapid_dilation=False), 4) == (1, 1)
    assert extra_block_dilations(ExitConfig(extra_blocks=0, rapid_dilation=True), 4) == ()


def test_conv_dilation_reads_the_last_spatial_conv():
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.Conv2d(4, 4, 1),
                          nn.Conv2d(4, 4, 3, padding=4, dilation=4), nn.Conv2d(4, 4, 1))
    assert conv_dilation(block) == 4
    assert conv_dilation(nn.Sequential(nn.Linear(4, 4)), current=2) == 2  # no conv: the dilation goes on


def test_a_dilated_resnet_exit_starts_from_its_stage_dilation():
    # blocks: stem, layer1, layer2, layer3 x2 (dilation 1 then 2), layer4 x3 (2 then 4, 4)
    m = models.create("drn50-fcn", num_classes=3, base_width=8, blocks=(1, 1, 2, 3), exit_points=(2, 6),
                      exits=ExitConfig(reduction=2, extra_blocks=3, rapid_dilation=True))
    assert [spatial_dilations(m.blocks[p])[-1] for p in (2, 6)] == [1, 4]
    assert [p.dilation for p in m.exit_profiles] == [1, 4, 4]
    assert spatial_dilations(m.exits[0].pre) == [2, 4, 8]
    assert spatial_dilations(m.exits[1].pre) == [8, 16, 32]


def test_the_demo_exits_start_from_their_points_dilation():
    m = models.create("demo", pretrained=False)
    # exit 0 follows the last stride-8 stage (dilation 1), exit 1 the first dilated stage (2)
    assert [p.dilation for p in m.exit_profiles[:2]] == [1, 2]
    assert [spatial_dilations(e.pre) for e in m.exits[:2]] == [[2, 4], [4, 8]]
    state = torch.load(models.demo.DEMO_WEIGHTS, weights_only=True)
    assert m.state_dict().keys() == state.keys()  # the keys of the shipped checkpoint are unchanged


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(0)
    return torch.randn(1, *DEMO_INPUT_SHAPE[1:])


def test_candidate_heads_follow_the_model_contract(x):
    m = with_candidate_heads(models.create("demo", pretrained=False))
    assert isinstance(m.exits[0], CandidateExits) and not isinstance(m.exits[2], CandidateExits)
    with torch.no_grad():
        outs = m(x)
    assert [len(o) if isinstance(o, list) else "final" for o in outs] == [5, 5, "final"]
    shapes = {tuple(t.shape) for o in outs[:2] for t in o} | {tuple(outs[2].shape)}
    assert shapes == {(1, 6, 128, 256)}
    grid = list(DEFAULT_CANDIDATE_GRID)
    assert m.exit_configs == tuple(grid + grid + [models.demo.DEMO_FINAL_EXIT])
    assert exit_names(outs) == [f"exit{p}c{j}" for p in (0, 1) for j in range(5)] + ["exit2"]
    assert len(m.output_strides) == 11
    # each head is its own module: the candidates' logits differ
    assert not torch.equal(outs[0][0], outs[0][1])


def test_default_grid_covers_the_exit_space_and_starts_with_the_demo_head():
    assert DEFAULT_CANDIDATE_GRID[0] == DEMO_EARLY_EXIT  # uncalibrated = the fixed-head demo
    assert len(DEFAULT_CANDIDATE_GRID) >= 4 and len(set(DEFAULT_CANDIDATE_GRID)) == len(DEFAULT_CANDIDATE_GRID)
    assert {c.head for c in DEFAULT_CANDIDATE_GRID} == {"fcn", "deeplab"}
    assert {c.rapid_dilation for c in DEFAULT_CANDIDATE_GRID} == {True, False}
    assert {c.extra_blocks for c in DEFAULT_CANDIDATE_GRID} == {0, 1, 2, 3}


def test_a_grid_and_points_of_choice(x):
    grid = [{"reduction": 2, "extra_blocks": 0, "rapid_dilation": False, "head": "fcn"},
            ExitConfig(reduction=1, extra_blocks=1, rapid_dilation=True, head="fcn")]
    m = with_candidate_heads(models.create("demo", pretrained=False), grid=grid, points=[1])
    with torch.no_grad():
        outs = m(x)
    assert exit_names(outs) == ["exit0", "exit1c0", "exit1c1", "exit2"]
    assert m.exit_configs[1:3] == (ExitConfig(2, 0, False, "fcn"), ExitConfig(1, 1, True, "fcn"))
    # torch.fx unrolls the candidates like any other head
    traced = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(traced(x)[1], outs[1]))


@pytest.mark.parametrize("kw, msg", [
    ({"grid": []}, "grid must be a non-empty list"),
    ({"grid": ExitConfig()}, "grid must be a non-empty list"),
    ({"grid": [{"reduction": 3}]}, "reduction must be one of"),
    ({"points": [2]}, r"points must be distinct early exit points in 0..1 \(the final point 2"),
    ({"points": [0, 0]}, "points must be distinct"),
])
def test_bad_grids_and_points_are_named(kw, msg):
    with pytest.raises(ModelLoadError, match=msg):
        with_candidate_heads(models.create("demo", pretrained=False), **kw)


def test_a_model_not_built_by_build_multi_exit_is_refused():
    with pytest.raises(ModelLoadError, match="was not built by mesc.models.multiexit.build_multi_exit"):
        with_candidate_heads(nn.Conv2d(3, 3, 1))


def test_backbone_only_load_of_a_stage1_checkpoint_reports_every_key():
    torch.manual_seed(1)
    stage1 = models.create("demo", pretrained=False)
    target = with_candidate_heads(models.create("demo", pretrained=False))
    report = load_backbone_only(target, stage1.state_dict())
    src, got = stage1.state_dict(), target.state_dict()
    early = [k for k in src if k.startswith(("exits.0.", "exits.1."))]
    assert sorted(report.skipped) == sorted(early) and set(report.skipped.values()) == {"early exit head"}
    assert sorted(report.loaded) == sorted(k for k in src if k not in early)
    assert all(torch.equal(got[k], src[k]) for k in report.loaded)
    assert sorted(report.missing) == sorted(k for k in got if k.startswith(("exits.0.", "exits.1.")))
    summary = report.summary()
    assert f"{len(report.loaded)} tensors loaded" in summary and "exits.0 (" in summary
    assert report.to_dict()["loaded"] == report.loaded


def test_backbone_only_load_refuses_other_shapes_and_foreign_checkpoints(tmp_path):
    target = with_candidate_heads(models.create("demo", pretrained=False))
    wide = models.create("demo", pretrained=False, width_mult=1.0)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ModelLoadError, match=r"wide.pt: 'blocks.0.0.weight' has shape \(32, 3, 3, 3\) but the "
                                             r"model's has \(16, 3, 3, 3\)"):
        load_backbone_only(target, tmp_path / "wide.pt")
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())  # nothing half loaded
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="other.pt: no backbone or final-head tensor matches the model"):
        load_backbone_only(target, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="nope.pt: file not found"):
        load_backbone_only(target, tmp_path / "nope.pt")


def test_demo_search_starts_from_the_shipped_backbone_and_final_head(x):
    demo = models.create("demo")
    search = models.create("demo-search")
    assert "demo-search" in models.list_models()
    assert search.init_report is not None and not search.training
    with torch.no_grad():
        final_demo, final_search = demo(x)[-1], search(x)[-1]
    assert torch.equal(final_demo, final_search)
    shipped = demo.state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in search.state_dict().items() if k.startswith("blocks."))
    scratch = models.create("demo-search", init=None)
    assert scratch.init_report is None
    assert not torch.equal(scratch.state_dict()["blocks.0.0.weight"], shipped["blocks.0.0.weight"])
