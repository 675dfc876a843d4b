"""Checkpoints of a model: reading a state dict from a file (unwrapped, never running code from
it), loading it strictly, loading only a stage-1 checkpoint's backbone and final head, and the
reports of what a partial load filled and skipped (:func:`keys_by_module`, shared with the
ImageNet backbone import in :mod:`mesc.models.pretrained`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from mesc.errors import ModelLoadError


def _unwrap_state_dict(obj, where: str):
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{where}: expected a state_dict (name -> tensor), or a dict "
                             f"holding one under 'state_dict' or 'model'; got {type(obj).__name__}")
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:  # torch names every parameter; other keys would fail deep inside load_state_dict
        raise ModelLoadError(f"{where}: a state_dict's keys are parameter names (strings); "
                             f"{len(odd)} are not, e.g. {odd[0]!r} ({type(odd[0]).__name__})")
    state = dict(obj)
    # Checkpoints saved from nn.DataParallel / DistributedDataParallel prefix every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def first_keys(keys, n=5) -> str:
    """The first ``n`` of ``keys``, and how many more there are."""
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def read_state_dict(path) -> dict:
    """The state dict a checkpoint file (or an object loaded from one) holds, unwrapped and
    without ``module.`` prefixes; a ModelLoadError naming the file when it holds none."""
    if isinstance(path, Mapping):
        return _unwrap_state_dict(path, "checkpoint (in memory)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"checkpoint {path}: file not found")
    try:
        # weights_only: a checkpoint is data; never run code from it.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / non-weights files
        raise ModelLoadError(f"checkpoint {path}: cannot be read as a torch state_dict "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return _unwrap_state_dict(obj, f"checkpoint {path}")


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Load a checkpoint into ``model`` strictly; every failure is a ModelLoadError naming the
    file and the first offending keys."""
    path = os.fspath(path)
    return load_state(model, read_state_dict(path), f"checkpoint {path}")


def load_state(model: nn.Module, state, where: str) -> nn.Module:
    """Load the state dict ``state`` into ``model`` strictly; a mismatch is one ModelLoadError
    that starts with ``where`` (``"checkpoint PATH"``, ``"--resume PATH"``) and names the first
    offending keys, not torch's list of every key."""
    state = _unwrap_state_dict(state, where)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {first_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {first_keys(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} keys with other shapes: {first_keys(misshaped, 3)}")
        raise ModelLoadError(f"{where} does not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def early_exit_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the early exit heads of a model that keeps its heads in an
    ``exits`` ModuleList, final head last (every mesc reference model); () for other models."""
    exits = getattr(model, "exits", None)
    if not isinstance(exits, nn.ModuleList):
        return ()
    return tuple(f"exits.{k}." for k in range(len(exits) - 1))


@dataclass
class BackboneLoad:
    """What :func:`load_backbone_only` did. ``loaded``: model keys filled from the checkpoint
    (backbone and final head); ``skipped``: checkpoint key -> why it was not loaded (an early
    exit head, or no such key in the model); ``missing``: model keys the checkpoint did not fill
    (the new heads, which start from scratch)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join([
            f"backbone-only load of {self.source}: {len(self.loaded)} tensors loaded (backbone and final head)",
            f"  skipped from the checkpoint: {len(self.skipped)} tensors{keys_by_module(self.skipped)}",
            f"  missing, trained from scratch: {len(self.missing)} tensors{keys_by_module(self.missing)}",
        ])

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": list(self.loaded), "skipped": dict(self.skipped),
                "missing": list(self.missing)}


def load_backbone_only(model: nn.Module, checkpoint, skip_prefixes: tuple[str, ...] | None = None) -> BackboneLoad:
    """Load a (stage-1) checkpoint's backbone and final head into ``model``, leaving its early exit
    heads as they are: non-strict, for a model with other heads than the checkpoint's (MESS stage
    2's candidate heads on a stage-1 backbone). Keys under ``skip_prefixes`` (default: the early
    exits, :func:`early_exit_prefixes`) and keys the model lacks are skipped; a key of another
    shape, or a checkpoint with nothing to load, is a ModelLoadError naming it. Returns the report."""
    source = "(in memory)" if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    state = read_state_dict(checkpoint)
    skip = early_exit_prefixes(model) if skip_prefixes is None else tuple(skip_prefixes)
    expected = model.state_dict()
    report = BackboneLoad(source)
    chosen = {}
    for key, value in state.items():
        if key.startswith(skip):
            report.skipped[key] = "early exit head"
        elif key not in expected:
            report.skipped[key] = "not in the model"
        elif tuple(value.shape) != tuple(expected[key].shape):
            raise ModelLoadError(f"checkpoint {source}: {key!r} has shape {tuple(value.shape)} but the model's has "
                                 f"{tuple(expected[key].shape)}: the checkpoint is of another backbone or width")
        else:
            chosen[key] = value
    if not chosen:
        raise ModelLoadError(f"checkpoint {source}: no backbone or final-head tensor matches the model (first keys: "
                             f"{first_keys(state)}; the model's: {first_keys(expected)})")
    model.load_state_dict(chosen, strict=False)
    report.loaded = list(chosen)
    report.missing = [k for k in expected if k not in chosen]
    return report


def keys_by_module(keys, depth: int = 2, limit: int = 8) -> str:
    """``exits.0 (12), fc (2)``: the keys counted by the module they belong to, named by at most
    ``depth`` parts."""
    counts: dict[str, int] = {}
    for key in keys:
        name = ".".join(key.split(".")[:-1][:depth]) or key
        counts[name] = counts.get(name, 0) + 1
    parts = [f"{name} ({n})" for name, n in counts.items()]
    more = f", +{len(parts) - limit} more" if len(parts) > limit else ""
    return (": " + ", ".join(parts[:limit]) + more) if parts else ""
