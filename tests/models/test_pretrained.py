"""ImageNet-pretrained backbones in the ecosystem's key layouts load into the reference models.

torchvision and the HRNet code do not run here, so each checkpoint is generated: the generators
below build the (name, shape) list by following the public sources' constructors, read from
pytorch/vision ``torchvision/models/resnet.py`` (commit 054e54c5) and
``torchvision/models/mobilenetv2.py`` (0256d651), and HRNet/HRNet-Image-Classification
``lib/models/cls_hrnet.py`` (4ad13bb3) with ``experiments/cls_hrnet_w18_sgd_lr5e-2_wd1e-4_bs32_x100.yaml``;
then fill them with random values.
"""

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from mesc import models
from mesc.datasets import synthetic
from mesc.cli import cli
from mesc.errors import ModelLoadError
from mesc.models.pretrained import load_backbone_weights


def conv(name, cout, cin, k, bias=False):
    return [(f"{name}.weight", (cout, cin, k, k))] + ([(f"{name}.bias", (cout,))] if bias else [])


def bn(name, c):
    return [(f"{name}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")] + \
        [(f"{name}.num_batches_tracked", ())]


def bottlenecks(prefix, n, inplanes, planes):
    """``_make_layer(Bottleneck, ...)`` of both sources: conv1/bn1 .. conv3/bn3, and a
    ``downsample`` (conv1x1 + BN) on the first block when the channels change."""
    keys = []
    for b in range(n):
        p = f"{prefix}.{b}"
        keys += conv(f"{p}.conv1", planes, inplanes, 1) + bn(f"{p}.bn1", planes)
        keys += conv(f"{p}.conv2", planes, planes, 3) + bn(f"{p}.bn2", planes)
        keys += conv(f"{p}.conv3", planes * 4, planes, 1) + bn(f"{p}.bn3", planes * 4)
        if b == 0 and inplanes != planes * 4:
            keys += conv(f"{p}.downsample.0", planes * 4, inplanes, 1) + bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
    return keys


def torchvision_resnet50_keys():
    keys = conv("conv1", 64, 3, 7) + bn("bn1", 64)
    inplanes = 64
    for layer, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        keys += bottlenecks(f"layer{layer}", n, inplanes, planes)
        inplanes = planes * 4
    return keys + [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]


def torchvision_mobilenetv2_keys():
    def conv_bn_act(name, cin, cout, k, groups=1):   # ConvNormActivation: 0 conv, 1 BN
        return [(f"{name}.0.weight", (cout, cin // groups, k, k))] + bn(f"{name}.1", cout)

    keys = conv_bn_act("features.0", 3, 32, 3)
    inp, i = 32, 1
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(n):
            hidden, p, j = int(round(inp * t)), f"features.{i}.conv", 0
            if t != 1:
                keys += conv_bn_act(f"{p}.0", inp, hidden, 1)
                j = 1
            keys += conv_bn_act(f"{p}.{j}", hidden, hidden, 3, groups=hidden)
            keys += conv(f"{p}.{j + 1}", c, hidden, 1) + bn(f"{p}.{j + 2}", c)   # pw-linear
            inp, i = c, i + 1
    keys += conv_bn_act(f"features.{i}", inp, 1280, 1)
    return keys + [("classifier.1.weight", (1000, 1280)), ("classifier.1.bias", (1000,))]


def hrnet_w18_imagenet_keys():
    keys = conv("conv1", 64, 3, 3) + bn("bn1", 64) + conv("conv2", 64, 64, 3) + bn("bn2", 64)
    keys += bottlenecks("layer1", 4, 64, 64)
    pre = [256]
    for s, n_modules in zip((2, 3, 4), (1, 4, 3)):
        channels = [18 * 2 ** b for b in range(s)]
        t = f"transition{s - 1}"
        for i, c in enumerate(channels):
            if i < len(pre):
                if c != pre[i]:
                    keys += conv(f"{t}.{i}.0", c, pre[i], 3) + bn(f"{t}.{i}.1", c)
            else:
                for j in range(i + 1 - len(pre)):
                    cout = c if j == i - len(pre) else pre[-1]
                    keys += conv(f"{t}.{i}.{j}.0", cout, pre[-1], 3) + bn(f"{t}.{i}.{j}.1", cout)
        for m in range(n_modules):
            p = f"stage{s}.{m}"
            for i, c in enumerate(channels):
                for b in range(4):
                    q = f"{p}.branches.{i}.{b}"
                    keys += conv(f"{q}.conv1", c, c, 3) + bn(f"{q}.bn1", c)
                    keys += conv(f"{q}.conv2", c, c, 3) + bn(f"{q}.bn2", c)
            for i in range(s):
                for j in range(s):
                    f = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        keys += conv(f"{f}.0", channels[i], channels[j], 1) + bn(f"{f}.1", channels[i])
                    for k in range(i - j):
                        cout = channels[i] if k == i - j - 1 else channels[j]
                        keys += conv(f"{f}.{k}.0", cout, channels[j], 3) + bn(f"{f}.{k}.1", cout)
        pre = channels
    head = [32, 64, 128, 256]
    for i, c in enumerate(pre):
        keys += bottlenecks(f"incre_modules.{i}", 1, c, head[i])
    for i in range(3):
        keys += conv(f"downsamp_modules.{i}.0", head[i + 1] * 4, head[i] * 4, 3, bias=True)
        keys += bn(f"downsamp_modules.{i}.1", head[i + 1] * 4)
    keys += conv("final_layer.0", 2048, 1024, 1, bias=True) + bn("final_layer.1", 2048)
    return keys + [("classifier.weight", (1000, 2048)), ("classifier.bias", (1000,))]


def state_dict_from(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {name: (torch.randint(0, 1000, shape, generator=g) if name.endswith("num_batches_tracked")
                   else torch.rand(shape, generator=g) + 0.5) for name, shape in keys}


# layout -> (reference model, key generator, checkpoint modules mesc has no place for)
CASES = {
    "torchvision-resnet50": ("drn50-fcn", torchvision_resnet50_keys, ("fc.",)),
    "torchvision-mobilenetv2": ("mbv2-fcn", torchvision_mobilenetv2_keys, ("features.18.", "classifier.")),
    "hrnet-w18-imagenet": ("hrnet18", hrnet_w18_imagenet_keys,
                           ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")),
}


@pytest.fixture(scope="module")
def reference():
    built = {}

    def get(name):
        if name not in built:
            built[name] = models.create(name)
        return built[name]
    return get


def test_generated_checkpoints_have_the_published_key_counts():
    # torchvision's resnet50 and mobilenet_v2 state dicts hold 320 and 314 tensors
    assert len(torchvision_resnet50_keys()) == 320
    assert len(torchvision_mobilenetv2_keys()) == 314
    keys = [k for k, _ in hrnet_w18_imagenet_keys()]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("layout", CASES)
def test_every_backbone_key_is_used_and_the_heads_are_new(layout, reference):
    name, keys, unused_prefixes = CASES[layout]
    model = reference(name)
    state = state_dict_from(keys())
    report = load_backbone_weights(model, state)
    assert report.layout == layout
    assert report.unused == [k for k in state if k.startswith(unused_prefixes)]
    assert sorted(report.loaded.values()) == sorted(k for k in state if not k.startswith(unused_prefixes))
    backbone = [k for k in model.state_dict() if k.startswith("blocks.")]
    assert sorted(report.loaded) == sorted(backbone)
    assert report.new and all(k.startswith("exits.") for k in report.new)
    current = model.state_dict()
    assert all(torch.equal(current[target], state[key]) for target, key in report.loaded.items())
    text = report.summary()
    assert f"{len(backbone)} tensors loaded" in text and "exits.0 (" in text


def test_the_loaded_stem_computes_what_the_checkpoint_does(reference):
    model = reference("drn50-fcn").eval()
    state = state_dict_from(torchvision_resnet50_keys(), seed=3)
    load_backbone_weights(model, state, "torchvision-resnet50")
    x = torch.rand(1, 3, 32, 32)
    by_hand = F.relu(F.batch_norm(F.conv2d(x, state["conv1.weight"], stride=2, padding=3),
                                  state["bn1.running_mean"], state["bn1.running_var"], state["bn1.weight"],
                                  state["bn1.bias"], training=False))
    with torch.no_grad():
        assert torch.allclose(model.blocks[0][0](x), by_hand, atol=1e-5)


def test_a_wrapped_module_prefixed_checkpoint_file_loads(reference, tmp_path):
    state = state_dict_from(torchvision_mobilenetv2_keys())
    path = tmp_path / "mbv2.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, path)
    model = reference("mbv2-fcn")
    report = load_backbone_weights(model, path)
    assert report.layout == "torchvision-mobilenetv2" and len(report.loaded) == 306
    assert torch.equal(model.state_dict()["blocks.0.0.weight"], state["features.0.0.weight"])


def test_a_wrong_shape_is_refused_naming_the_key_and_both_shapes(reference):
    state = state_dict_from(torchvision_resnet50_keys())
    state["layer2.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    model = reference("drn50-fcn")
    before = model.state_dict()["blocks.0.0.0.weight"].clone()
    with pytest.raises(ModelLoadError, match=r"'layer2\.1\.conv2\.weight' has shape \(128, 128, 1, 1\) .*"
                                             r"'blocks\.5\.conv2\.0\.weight' has shape \(128, 128, 3, 3\)"):
        load_backbone_weights(model, state)
    assert torch.equal(model.state_dict()["blocks.0.0.0.weight"], before)   # nothing loaded


def test_a_wrong_layout_is_refused_naming_the_key(reference):
    mbv2 = state_dict_from(torchvision_mobilenetv2_keys())
    with pytest.raises(ModelLoadError, match=r"'features\.0\.0\.weight' is not a torchvision's ResNet-50"):
        load_backbone_weights(reference("drn50-fcn"), mbv2, "torchvision-resnet50")
    with pytest.raises(ModelLoadError, match=r"'conv1\.weight' \(torchvision-resnet50\) has no place in this model"):
        load_backbone_weights(reference("mbv2-fcn"), state_dict_from(torchvision_resnet50_keys()))
    with pytest.raises(ModelLoadError, match="cannot tell the layout.*keyed like a mesc model"):
        load_backbone_weights(reference("mbv2-fcn"), reference("mbv2-fcn").state_dict())
    with pytest.raises(ModelLoadError, match="unknown backbone layout 'timm'"):
        load_backbone_weights(reference("mbv2-fcn"), mbv2, "timm")


def test_a_width_multiplier_cannot_take_full_width_weights():
    demo = models.create("demo", pretrained=False)   # MobileNetV2 x0.5
    with pytest.raises(ModelLoadError, match=r"'features\.0\.0\.weight' has shape \(32, 3, 3, 3\).*"
                                             r"\(16, 3, 3, 3\).*width multiplier"):
        load_backbone_weights(demo, state_dict_from(torchvision_mobilenetv2_keys()))


def test_train_cli_starts_from_backbone_weights_and_prints_the_report(tmp_path):
    scenes = synthetic.generate(tmp_path / "train", 2, seed=1, size=(32, 64), difficulty=(0, 0.4))
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(state_dict_from(torchvision_mobilenetv2_keys()), weights)
    args = ["train", "--model", "mbv2-fcn", "--data", str(scenes), "--epochs1", "1", "--epochs2", "0",
            "--batch", "2", "--backbone-weights", str(weights)]
    res = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "out.pt")])
    assert res.exit_code == 0, res.output
    assert "backbone weights (torchvision-mobilenetv2): 306 tensors loaded" in res.output
    assert "unused from the checkpoint: 8 tensors: features.18 (6), classifier.1 (2)" \
        in res.output
    res = CliRunner().invoke(cli, args + ["--backbone-layout", "hrnet-w18-imagenet", "-o", str(tmp_path / "b.pt")])
    assert res.exit_code == 2 and "'features.0.0.weight' is not" in res.output and not (tmp_path / "b.pt").exists()
    res = CliRunner().invoke(cli, args + ["-w", str(weights), "-o", str(tmp_path / "c.pt")])
    assert res.exit_code == 2 and "not both" in res.output
