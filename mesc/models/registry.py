"""Name -> factory registry of the reference models, and checkpoint loading."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Callable

import torch
import torch.nn as nn

from mesc.errors import ModelLoadError

DEFAULT_MODEL = "demo"

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register(name: str, doc: str):
    """Decorator: register a model factory under ``name`` with a one-line description."""
    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = (factory, doc)
        factory.model_name = name
        return factory
    return deco


def list_models() -> dict[str, str]:
    return {name: doc for name, (_, doc) in _REGISTRY.items()}


def get_factory(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ModelLoadError(f"unknown model {name!r}; registered models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0]


def create(name: str, num_classes: int | None = None, exits=None, checkpoint=None, **kwargs) -> nn.Module:
    """Build a registered model. Arguments left as None take the factory's defaults."""
    factory = get_factory(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if exits is not None:
        kwargs["exits"] = exits
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    sig = inspect.signature(factory)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise ModelLoadError(f"model {name!r}: {e}; its factory takes {sig}") from None
    return factory(**kwargs)


def _unwrap_state_dict(obj, path):
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"checkpoint {path}: expected a state_dict (name -> tensor), or a dict "
                             f"holding one under 'state_dict' or 'model'; got {type(obj).__name__}")
    state = dict(obj)
    # Checkpoints saved from nn.DataParallel / DistributedDataParallel prefix every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _first(keys, n=5):
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def read_state_dict(path) -> dict:
    """The state dict a checkpoint file (or an object loaded from one) holds, unwrapped and
    without ``module.`` prefixes; a ModelLoadError naming the file when it holds none."""
    if isinstance(path, Mapping):
        return _unwrap_state_dict(path, "(in memory)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"checkpoint {path}: file not found")
    try:
        # weights_only: a checkpoint is data; never run code from it.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / non-weights files
        raise ModelLoadError(f"checkpoint {path}: cannot be read as a torch state_dict "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return _unwrap_state_dict(obj, path)


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Load a checkpoint into ``model`` strictly; every failure is a ModelLoadError naming the
    file and the first offending keys."""
    path = os.fspath(path)
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} keys with other shapes: {_first(misshaped, 3)}")
        raise ModelLoadError(f"checkpoint {path} does not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def finish(model: nn.Module, checkpoint) -> nn.Module:
    """Common tail of every factory: load the checkpoint if any, and switch to eval mode (the
    models are built to be exported; call .train() to fine-tune)."""
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()
