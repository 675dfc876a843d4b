"""MESS two-stage training and per-exit evaluation for any mesc multi-exit model.

A model is any ``nn.Module`` whose ``forward(x)`` returns the exits' logits (N x M x H x W, at
input resolution), shallow to deep: the same contract as the exporter. An exit point may return
a list of candidate heads' logits instead of one tensor; training and evaluation flatten them
(point by point, candidates in order). No attribute names are assumed; which parameters belong
to the early heads is found from the autograd graph (:mod:`~mesc.training.exits`).

Stage 1 (MESS Eq. 2, exit dropout) trains everything; stage 2 (MESS Eq. 3, positive filtering
distillation) only the early heads, with backbone and final exit frozen
(:mod:`~mesc.training.losses`). The rooms: the recipe (:mod:`~mesc.training.config`), the loop
(:mod:`~mesc.training.loop`), data streamed from disk (:mod:`~mesc.training.data`), the
per-epoch checkpoint (:mod:`~mesc.training.state`) and log (:mod:`~mesc.training.log`), per-exit
mIoU of a model (:mod:`~mesc.training.validation`), the ``mesc train`` command
(:mod:`~mesc.training.command`) and its torchrun entry (:mod:`~mesc.training.dist`; a
process's rank in the group: :mod:`~mesc.training.process_group`).

The names below are imported on first use, so ``mesc --help`` (which registers the command)
does not import torch.
"""

from __future__ import annotations

import importlib

from mesc.errors import TrainError

# public name -> the module that defines it
_HOME = {
    "TrainConfig": "config", "SCHEDULES": "config",
    "train": "loop", "check_output": "loop", "check_outputs": "loop", "save_checkpoint": "loop",
    "exit_points": "exits", "as_exit_list": "exits", "early_exit_parameters": "exits",
    "freeze_norm_stats": "exits",
    "EXIT_DROPOUT": "losses", "DEFAULT_EXIT_DROPOUT": "losses", "DEFAULT_ALPHA": "losses", "exit_dropout_schedule": "losses",
    "batch_count": "losses", "exit_losses": "losses", "exit_dropout_loss": "losses", "pfd_loss": "losses",
    "DEFAULT_NORMALIZATION": "data", "SegData": "data", "normalization_of": "data", "to_input": "data",
    "predict_exits": "validation", "evaluate": "validation", "evaluate_miou": "validation",
    "format_miou_table": "validation", "difficulty_table": "validation",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOME))


__all__ = ["TrainError", *_HOME]
