"""The training checkpoint written after every epoch: everything ``--resume`` needs in one file.

It holds the weights under ``model`` (float32, plain keys), which is where
``mesc.models.load_checkpoint`` (and so ``mesc export -w``) looks inside a dict, so the same
file resumes training and exports.
"""

from __future__ import annotations

import torch

from mesc.errors import TrainError

FORMAT = "mesc-train-checkpoint/1"


def plain_state(model) -> dict:
    """float32 copies of the weights, without a DistributedDataParallel ``module.`` wrapper."""
    model = getattr(model, "module", model)
    return {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
            for k, v in model.state_dict().items()}


def save(path, model, optimizer, scheduler, scaler, stage: int, epoch: int, config: dict, history: list) -> None:
    """Written atomically: an interrupted save leaves the previous epoch's file whole."""
    from mesc.staging import atomic_file

    state = {"format": FORMAT, "model": plain_state(model), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
             "stage": stage, "epoch": epoch, "config": config, "history": history}
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load(path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"--resume {path}: file not found") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise TrainError(f"--resume {path}: cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError(f"--resume {path} is not a mesc training checkpoint (a plain state_dict cannot "
                         f"resume: pass it as --weights to start from its weights)")
    return state
