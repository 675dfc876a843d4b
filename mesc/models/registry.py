"""Name -> factory registry of the reference models (checkpoints: :mod:`mesc.models.checkpoints`)."""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from mesc.errors import ModelLoadError
from mesc.models.checkpoints import load_checkpoint

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


def finish(model: nn.Module, checkpoint) -> nn.Module:
    """Common tail of every factory: load the checkpoint if any, and switch to eval mode (the
    models are built to be exported; call .train() to fine-tune)."""
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()
