"""ImageNet-pretrained backbone weights, in the ecosystem's key layouts, for the reference models.

A layout renames each checkpoint key to the reference model's key (``blocks.<i>...``), or marks
it unused (the ImageNet classifier, layers mesc drops), or does not know it (another network:
refused). The renaming follows the public sources the checkpoints come from:
torchvision's ``models/resnet.py`` and ``models/mobilenetv2.py`` and HRNet-Image-Classification's
``lib/models/cls_hrnet.py`` with ``cls_hrnet_w18_sgd_lr5e-2_wd1e-4_bs32_x100.yaml``.
Imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable

import torch.nn as nn

from mesc.errors import ModelLoadError
from mesc.models.mobilenetv2 import DEPTH as MBV2_DEPTH
from mesc.models.checkpoints import keys_by_module, read_state_dict

# A layout's answer for a key it knows but mesc has no place for.
UNUSED = ""

RESNET50_BLOCKS = (3, 4, 6, 3)
# HRNet-W18: Bottleneck blocks of stage 1, then the number of modules of stages 2..4.
HRNET_STAGE1_BLOCKS = 4
HRNET_MODULES = (1, 4, 3)


def _bottleneck_key(rest: str) -> str | None:
    """``conv2.weight`` / ``bn2.bias`` / ``downsample.1.running_mean`` (separate conv and BN
    attributes, as torchvision and HRNet write them) -> mesc's ConvBNAct children."""
    m = re.fullmatch(r"(conv|bn)([123])\.(\w+)", rest)
    if m:
        return f"conv{m[2]}.{0 if m[1] == 'conv' else 1}.{m[3]}"
    return rest if re.fullmatch(r"downsample\.[01]\.\w+", rest) else None


def _resnet50(key: str) -> str | None:
    m = re.fullmatch(r"(conv1|bn1)\.(\w+)", key)
    if m:
        return f"blocks.0.0.{0 if m[1] == 'conv1' else 1}.{m[2]}"
    if re.fullmatch(r"fc\.(weight|bias)", key):
        return UNUSED
    m = re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key)
    if m and int(m[2]) < RESNET50_BLOCKS[int(m[1]) - 1]:
        rest = _bottleneck_key(m[3])
        first = 1 + sum(RESNET50_BLOCKS[:int(m[1]) - 1])   # blocks.0 is the stem
        return None if rest is None else f"blocks.{first + int(m[2])}.{rest}"
    return None


def _mobilenetv2(key: str) -> str | None:
    last = sum(MBV2_DEPTH) + 1   # features.<last> is the 1x1 conv to 1280 channels, dropped by mesc
    if re.fullmatch(rf"(features\.{last}\.[01]|classifier\.1)\.\w+", key):
        return UNUSED
    m = re.fullmatch(r"features\.0\.([01]\.\w+)", key)
    if m:
        return f"blocks.0.{m[1]}"
    m = re.fullmatch(r"features\.(\d+)\.conv\.(\d)\.(.+)", key)
    if not m or not 1 <= int(m[1]) < last:
        return None
    block, index, rest = int(m[1]), int(m[2]), m[3]
    # torchvision writes the linear projection as a bare Conv2d + BatchNorm2d after the
    # conv-BN-ReLU6 layers (one of them in the first stage, whose expand ratio is 1; two elsewhere);
    # mesc keeps it as one more conv-BN pair.
    n_act = 1 if block <= MBV2_DEPTH[0] else 2
    if index < n_act and re.fullmatch(r"[01]\.\w+", rest):
        return f"blocks.{block}.conv.{index}.{rest}"
    if index in (n_act, n_act + 1) and re.fullmatch(r"\w+", rest):
        return f"blocks.{block}.conv.{n_act}.{index - n_act}.{rest}"
    return None


def _hrnet_w18(key: str) -> str | None:
    if re.fullmatch(r"(incre_modules|downsamp_modules|final_layer|classifier)\..+", key):
        return UNUSED
    m = re.fullmatch(r"(conv|bn)([12])\.(\w+)", key)
    if m:
        return f"blocks.0.conv.{int(m[2]) - 1}.{0 if m[1] == 'conv' else 1}.{m[3]}"
    m = re.fullmatch(r"layer1\.(\d+)\.(.+)", key)
    if m and int(m[1]) < HRNET_STAGE1_BLOCKS:
        rest = _bottleneck_key(m[2])
        return None if rest is None else f"blocks.{1 + int(m[1])}.block.{rest}"
    # blocks.<first[s]> is stage s's first module, joined with the transition into it
    first = dict(zip(range(2, 5), accumulate((1 + HRNET_STAGE1_BLOCKS,) + HRNET_MODULES[:-1])))
    m = re.fullmatch(r"transition([1-3])\.(\d)\.(.+)", key)
    if m:
        stage, branch, rest = int(m[1]) + 1, int(m[2]), m[3]
        prefix = f"blocks.{first[stage]}.0"
        # stage s has s branches: the first s-1 are adapted (conv-BN-ReLU), the last one is
        # spawned from the lowest resolution (a Sequential holding one conv-BN-ReLU)
        if branch < stage - 1 and re.fullmatch(r"[01]\.\w+", rest):
            return f"{prefix}.adapt.{branch}.{rest}"
        if branch == stage - 1 and re.fullmatch(r"0\.[01]\.\w+", rest):
            return f"{prefix}.spawn.0.{rest[2:]}"
        return None
    m = re.fullmatch(r"stage([2-4])\.(\d)\.(branches|fuse_layers)\.(\d)\.(.+)", key)
    if not m or int(m[2]) >= HRNET_MODULES[int(m[1]) - 2] or int(m[4]) >= int(m[1]):
        return None
    stage, module, part, branch, rest = int(m[1]), int(m[2]), m[3], m[4], m[5]
    prefix = f"blocks.{first[stage] + module}" + (".1" if module == 0 else "")
    if part == "fuse_layers":
        return f"{prefix}.fuse.{branch}.{rest}"
    m = re.fullmatch(r"(\d)\.(.+)", rest)
    inner = m and _bottleneck_key(m[2])   # BasicBlock keys: conv1/bn1/conv2/bn2, as a bottleneck's
    return f"{prefix}.branches.{branch}.{m[1]}.{inner}" if inner else None


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    rename: Callable[[str], str | None]
    # a key only this layout has, for layout="auto"
    signature: str


LAYOUTS = {layout.name: layout for layout in (
    Layout("torchvision-resnet50", "torchvision's ResNet-50 (into drn50-*)", _resnet50, "layer4.0.conv1.weight"),
    Layout("torchvision-mobilenetv2", "torchvision's MobileNetV2 (into mbv2-* at width_mult=1.0)", _mobilenetv2,
           "features.1.conv.0.0.weight"),
    Layout("hrnet-w18-imagenet", "HRNet-Image-Classification's HRNet-W18 (into hrnet18)", _hrnet_w18,
           "transition1.0.0.weight"),
)}


@dataclass
class BackboneReport:
    """What :func:`load_backbone_weights` did: ``loaded`` maps each model key filled to its
    checkpoint key; ``new`` are the model keys the checkpoint did not fill (the exit heads);
    ``unused`` are the checkpoint keys mesc has no place for (the ImageNet classifier)."""

    layout: str
    loaded: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join([
            f"backbone weights ({self.layout}): {len(self.loaded)} tensors loaded",
            f"  new, trained from scratch: {len(self.new)} tensors{keys_by_module(self.new)}",
            f"  unused from the checkpoint: {len(self.unused)} tensors{keys_by_module(self.unused)}",
        ])


def detect_layout(keys) -> str:
    keys = set(keys)
    found = [layout.name for layout in LAYOUTS.values() if layout.signature in keys]
    if len(found) == 1:
        return found[0]
    hint = " (it is keyed like a mesc model: load it with --weights / checkpoint=)" if any(
        k.startswith("blocks.") for k in keys) else ""
    raise ModelLoadError(f"cannot tell the layout of the checkpoint{hint}; first keys: "
                         f"{', '.join(sorted(keys)[:4])}; name one of: {', '.join(LAYOUTS)}")


def load_backbone_weights(model: nn.Module, file_or_state_dict, layout: str = "auto") -> BackboneReport:
    """Load ImageNet-pretrained backbone weights into a reference model, in place.

    ``file_or_state_dict``: a checkpoint file or a state dict, possibly wrapped under
    ``state_dict`` / ``model`` and prefixed ``module.`` (DataParallel). Every checkpoint key must
    be one the layout knows and must land on a model key of the same shape; otherwise nothing is
    loaded and a ModelLoadError names the key (and both shapes).
    """
    state = read_state_dict(file_or_state_dict)
    if layout == "auto":
        layout = detect_layout(state)
    if layout not in LAYOUTS:
        raise ModelLoadError(f"unknown backbone layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    expected = model.state_dict()
    report = BackboneReport(layout)
    mapped = {}
    for key, value in state.items():
        target = spec.rename(key)
        if target is None:
            raise ModelLoadError(f"checkpoint key {key!r} is not a {spec.description} key: "
                                 f"the checkpoint is not in the {layout} layout")
        if target == UNUSED:
            report.unused.append(key)
            continue
        if target not in expected:
            raise ModelLoadError(f"checkpoint key {key!r} ({layout}) has no place in this model (no {target!r}): "
                                 f"the layout is for {spec.description}")
        want, got = tuple(expected[target].shape), tuple(value.shape)
        if want != got:
            hint = (" (the model is built at another width than the checkpoint: a width multiplier such as "
                    "MobileNetV2 x0.5 cannot take x1.0 weights)") if len(want) == len(got) and want[:1] != got[:1] else ""
            raise ModelLoadError(f"checkpoint key {key!r} has shape {got} but the model's {target!r} has "
                                 f"shape {want}{hint}")
        mapped[target] = value
        report.loaded[target] = key
    if not mapped:
        raise ModelLoadError(f"the checkpoint holds no backbone weights for the {layout} layout")
    model.load_state_dict(mapped, strict=False)
    report.new = [k for k in expected if k not in mapped]
    return report
