"""The reference models: contract (list of full-resolution exits), fx-traceability, exit
placement by FLOP shares, checkpoints and the registry. Tiny widths at 64x128 to stay fast on
the 2-core CI machine."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mesc.models as models
from mesc.errors import ModelLoadError
from mesc.models import ExitConfig
from mesc.models.placement import choose_exit_points, cumulative_shares
from tiny_models import CANDIDATE_MODELS, TINY, tiny

H, W = 64, 128
EXPECTED_EXITS = {"drn50-fcn": 3, "drn50-deeplab": 3, "mbv2-fcn": 4, "mbv2-deeplab": 4, "hrnet18": 4,
                  "unet-skip": 3, "mit-b0": 4, "demo": 3}


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(123)
    return torch.randn(2, 3, H, W)


def test_every_registered_model_is_covered():
    assert set(models.list_models()) == set(TINY) | CANDIDATE_MODELS
    assert models.DEFAULT_MODEL in models.list_models()
    assert all(isinstance(d, str) and d and "\n" not in d for d in models.list_models().values())


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_contract_and_fx_trace(name, x):
    model = tiny(name)
    classes = 6 if name == "demo" else 19
    with torch.no_grad():
        outs = model(x)
        assert isinstance(outs, list) and len(outs) == EXPECTED_EXITS[name]
        for o in outs:
            assert o.shape == (2, classes, H, W)
            assert torch.isfinite(o).all()
        traced = torch.fx.symbolic_trace(model)
        touts = traced(x)
    assert len(touts) == len(outs)
    for a, b in zip(outs, touts):
        assert torch.equal(a, b)
    assert len(model.output_strides) == len(outs)
    assert model.input_normalization == {"scale": 255.0, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225]}
    expected_shape = (1, 3, 128, 256) if name == "demo" else (1, 3, 512, 1024)
    assert tuple(model.default_input_shape) == expected_shape


def test_every_exit_ends_with_the_input_size_interpolate():
    # The exporter reads each exit's output stride off the tensor fed to this final call.
    graph = torch.fx.symbolic_trace(tiny("hrnet18")).graph
    output = next(n for n in graph.nodes if n.op == "output")
    for node in output.args[0]:
        assert node.op == "call_function" and node.target is torch.nn.functional.interpolate
        size = node.kwargs["size"]
        assert size.op == "call_function" and size.args[0].op == "call_function"
        assert size.args[0].args[0].op == "placeholder"   # getitem(getattr(x, "shape"), -2:)


def _real_block_flops(model, shape):
    feat = torch.zeros(shape)
    flops = []
    with torch.no_grad():
        for block in model.blocks:
            with FlopCounterMode(display=False) as fc:
                feat = block(feat)
            flops.append(fc.get_total_flops())
    return flops


@pytest.mark.parametrize("name,kwargs", [
    ("drn50-fcn", dict(base_width=4, num_exits=4)),
    ("mbv2-fcn", dict(width_mult=0.25, num_exits=3)),
    ("hrnet18", dict(width=4, stem_width=8, branch_blocks=1, modules=(1, 2, 2), num_exits=4)),
])
def test_exits_sit_at_near_equal_flop_shares(name, kwargs):
    torch.manual_seed(0)
    model = models.create(name, **kwargs).eval()
    flops = _real_block_flops(model, (1, 3, H, W))
    shares = cumulative_shares(flops)
    # As close as the block granularity allows: within half the largest block's share.
    tol = max(flops) / sum(flops) / 2 + 0.01
    assert tol < 0.15
    e = len(model.exit_points)
    for k, p in enumerate(model.exit_points[:-1], start=1):
        assert abs(shares[p] - k / e) <= tol, (k, shares[p])
    # and the placement measured at 512x1024 on meta picks the same points as real 64x128 FLOPs
    assert list(model.exit_points) == choose_exit_points(flops, e, first_block=1)


def test_placement_picks_closest_boundaries():
    assert choose_exit_points([1] * 8, 4) == [1, 3, 5, 7]
    assert choose_exit_points([10, 1, 1, 1, 1, 1], 3, first_block=0) == [0, 1, 5]
    with pytest.raises(ModelLoadError):
        choose_exit_points([1, 1], 4)


def test_explicit_exit_points_and_hrnet_stage_exits(x):
    m = tiny("mbv2-fcn", exit_points=[2, 4], num_exits=None)
    assert m.exit_points == (2, 4, 7)
    with pytest.raises(ModelLoadError, match="exit_points"):
        tiny("mbv2-fcn", exit_points=[4, 2])
    h = tiny("hrnet18", stage1_blocks=2, modules=(1, 2, 1))   # default: exits at the stage ends
    assert h.exit_points == (2, 3, 5, 6)
    # exits after stages 2..4 consume 2, 3, 4 branch tensors
    assert [e.num_branches for e in h.exits] == [1, 2, 3, 4]


def test_exit_space_variants(x):
    cfgs = [ExitConfig(reduction=8, extra_blocks=3, rapid_dilation=True, head="deeplab"),
            {"reduction": 1, "extra_blocks": 0, "rapid_dilation": False, "head": "fcn"},
            ExitConfig(reduction=4, extra_blocks=2, rapid_dilation=False, head="fcn")]
    m = tiny("mbv2-fcn", exits=cfgs, num_exits=None, final_exit=ExitConfig(1, 0, False, "deeplab"))
    assert [c.head for c in m.exit_configs] == ["deeplab", "fcn", "fcn", "deeplab"]
    dil = [mod.dilation for mod in m.exits[0].pre.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert dil == [(1, 1), (2, 2), (4, 4), (8, 8)]
    with torch.no_grad():
        outs = m(x)
        touts = torch.fx.symbolic_trace(m)(x)
    assert [o.shape for o in outs] == [(2, 19, H, W)] * 4
    assert all(torch.equal(a, b) for a, b in zip(outs, touts))
    for bad in (dict(reduction=3), dict(extra_blocks=4), dict(head="pspnet")):
        with pytest.raises(ModelLoadError):
            ExitConfig(**bad)
    with pytest.raises(ModelLoadError, match="exit configs"):
        tiny("mbv2-fcn", exits=[ExitConfig()] * 5, num_exits=3)


def test_checkpoint_round_trip(tmp_path, x):
    src = tiny("drn50-fcn", seed=0)
    path = tmp_path / "ck.pt"
    torch.save(src.state_dict(), path)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, wrapped)
    with torch.no_grad():
        ref = src(x)
        for ck in (path, wrapped):
            dst = tiny("drn50-fcn", seed=1, checkpoint=str(ck))
            assert all(torch.equal(a, b) for a, b in zip(ref, dst(x)))


def test_bad_checkpoints_raise_model_load_error(tmp_path):
    src = tiny("drn50-fcn")
    state = src.state_dict()
    mismatched = tmp_path / "other_classes.pt"
    torch.save(tiny("drn50-fcn", num_classes=5).state_dict(), mismatched)
    with pytest.raises(ModelLoadError, match=r"other_classes\.pt.*exits\.0\.head\.1\.weight"):
        tiny("drn50-fcn", checkpoint=str(mismatched))

    partial = tmp_path / "partial.pt"
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("exits.2")}}, partial)
    with pytest.raises(ModelLoadError, match=r"partial\.pt.*missing keys: exits\.2\."):
        tiny("drn50-fcn", checkpoint=str(partial))

    extra = tmp_path / "extra.pt"
    torch.save({**state, "aux.weight": torch.zeros(1)}, extra)
    with pytest.raises(ModelLoadError, match=r"unexpected keys: aux\.weight"):
        models.load_checkpoint(src, extra)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"garbage\.pt"):
        models.load_checkpoint(src, garbage)
    with pytest.raises(ModelLoadError, match=r"nowhere\.pt.*not found"):
        models.load_checkpoint(src, tmp_path / "nowhere.pt")


def test_registry_errors():
    with pytest.raises(ModelLoadError, match="unknown model 'resnet9000'.*drn50-fcn.*demo"):
        models.create("resnet9000")
    with pytest.raises(ModelLoadError, match="no_such_arg"):
        models.create("unet-skip", no_such_arg=1)


def test_demo_defaults():
    torch.manual_seed(0)
    m = models.create("demo", pretrained=False)
    assert m.num_classes == 6 and len(m.exit_points) == 3
    assert m.default_input_shape == (1, 3, 128, 256)
    assert not m.training
    # MESS-shaped: cheap early exits at the ends of stages 3 and 5, a DeepLabV3 final exit
    assert m.exit_points == (6, 13, 17)
    assert [c.head for c in m.exit_configs] == ["fcn", "fcn", "deeplab"]
    assert m.output_strides == (8, 8, 8)
    # the same stage ends at any depth, and FLOP-share placement for another number of exits
    assert models.create("demo", **TINY["demo"]).exit_points == (3, 5, 7)
    assert len(models.create("demo", num_exits=4, pretrained=False).exit_points) == 4


def test_unet_skip_crosses_two_exits():
    # enc1's output must still be needed after both earlier exits have been computed.
    graph = torch.fx.symbolic_trace(tiny("unet-skip")).graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    enc1_out = [n for n in graph.nodes if n.op == "call_module" and n.target.startswith("enc1.")][-1]
    exit2_last = [n for n in graph.nodes if n.op == "call_module" and n.target.startswith("exits.1.")][-1]
    assert max(order[u] for u in enc1_out.users) > order[exit2_last]
