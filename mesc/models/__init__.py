"""Reference multi-exit segmentation models (written here: no torchvision/timm). Imports torch.

Every model's ``forward(x)`` returns a list of exit logits, shallow to deep, each
N x num_classes x H x W at the input resolution, and is torch.fx-traceable.
"""

from __future__ import annotations

from mesc.models.checkpoints import load_checkpoint
from mesc.models.heads import ExitConfig
from mesc.models.registry import DEFAULT_MODEL, create, get_factory, list_models, register

# Importing the model modules registers their factories (in this order in list_models()).
from mesc.models import resnet, mobilenetv2, hrnet, unet, mit, demo  # noqa: E402,F401  isort:skip

__all__ = ["DEFAULT_MODEL", "ExitConfig", "create", "get_factory", "list_models", "load_checkpoint", "register"]
