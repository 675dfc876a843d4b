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
    from mesc.package.staging import atomic_file

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


# settings that only place the run (threads, loader workers, device, mixed precision): a resume
# may change them; every other one shapes the result, so a resume must repeat it
PLACEMENT = ("threads", "workers", "device", "amp")


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_settings(path, state: dict, settings: dict) -> None:
    """Refuse to resume ``state`` (read from ``path``) with other ``settings`` than it was
    written with: the finished epochs would silently mix two recipes (or two splits). Settings
    an older checkpoint lacks are not compared."""
    saved = state.get("config") or {}
    changed = [f"{k} {_plain(saved[k])!r} -> {_plain(v)!r}" for k, v in settings.items()
               if k not in PLACEMENT and k in saved and _plain(saved[k]) != _plain(v)]
    if changed:
        raise TrainError(f"--resume {path} was written with other settings ({'; '.join(changed)}): resume with "
                         f"the same ones, or start a new run")
