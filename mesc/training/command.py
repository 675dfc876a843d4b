"""``mesc train``: MESS two-stage training, from the command line or under torchrun.

The command lives with training, not in :mod:`mesc.cli`, because the torchrun entry
(:mod:`mesc.training.dist`) runs the same options in every process and must not import the CLI;
``mesc`` registers it like its own commands."""

from __future__ import annotations

import click

from mesc.errors import MescError
from mesc.lazy import require
from mesc.ranges import Real, Whole


def _from_scratch(model: str) -> dict:
    """Factory arguments that stop a registered model loading its shipped weights: training
    starts from --weights or from scratch, never silently from a bundled checkpoint."""
    import inspect

    from mesc import models

    if ":" in model or model not in models.list_models():
        return {}
    return {"pretrained": False} if "pretrained" in inspect.signature(models.get_factory(model)).parameters else {}


def _parse_scale(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise MescError(f"--scale: expected LOW:HIGH (e.g. 0.5:2), got {text!r}") from None
    if not 0 < lo <= hi:
        raise MescError(f"--scale: need 0 < LOW <= HIGH, got {text!r}")
    return lo, hi


@click.command("train")
@click.option("--model", "-m", required=True,
              help="Registered name, module:factory, or path/to/file.py:factory.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to start from.")
@click.option("--backbone-weights", type=click.Path(dir_okay=False), default=None,
              help="ImageNet-pretrained backbone to start from: torchvision's ResNet-50 or MobileNetV2 "
                   "state dict, or the official HRNet-W18 checkpoint (exit heads start from scratch).")
@click.option("--init", type=click.Path(dir_okay=False), default=None,
              help="Stage-1 checkpoint whose backbone and final head start the model, its early heads skipped "
                   "(MESS stage 2 with new candidate heads: --epochs1 0); prints what was loaded, skipped "
                   "and missing.")
@click.option("--backbone-layout", default="auto", show_default=True,
              help="Key layout of --backbone-weights: auto tells it from the keys, and lists the "
                   "layouts when it cannot.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Labelled training folder.")
@click.option("--val", "val_dir", type=click.Path(), default=None, help="Labelled folder for per-exit mIoU.")
@click.option("--split", default=None, help="Split of --data to train on (e.g. train); default: all.")
@click.option("--val-split", default=None, help="Split of --val to score (e.g. val); default: all.")
@click.option("--epochs1", type=Whole(min=0), default=10, show_default=True, help="Stage 1 (exit dropout) epochs.")
@click.option("--epochs2", type=Whole(min=0), default=5, show_default=True, help="Stage 2 (PFD, early heads) epochs.")
@click.option("--batch", type=Whole(min=2), default=8, show_default=True,
              help="Images per step, at least 2 (BatchNorm); under torchrun the global batch.")
@click.option("--lr", type=Real(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--alpha", type=Real(0, 1), default=0.5, show_default=True,
              help="MESS Eq. 3: per pixel alpha * (CE where the final exit is right) + (1 - alpha) * KL(final || "
                   "exit), in [0, 1].")
@click.option("--exit-dropout", type=click.Choice(["eq2", "prose"]), default="eq2", show_default=True,
              help="Stage 1's schedule: eq2 = MESS Eq. 2, the final exit and early exit i (from 1) on batches j "
                   "(from 1) with j mod i = 0; prose = the final exit and one early exit in turn per batch.")
@click.option("--seed", type=Whole(0, 2**32 - 1), default=0, show_default=True)
@click.option("--crop", default=None, help="Train on random HxW crops (e.g. 64x128); default whole images.")
@click.option("--threads", type=Whole(min=1), default=None, help="torch CPU threads.")
@click.option("--scale", default="0.5:2", show_default=True, help="Random rescale range LOW:HIGH (1:1: none).")
@click.option("--jitter", type=Real(0, 1, max_open=True), default=0.2, show_default=True,
              help="Colour jitter: brightness, contrast, saturation scaled within 1 +- this.")
@click.option("--schedule", type=click.Choice(["poly", "cosine"]), default="poly", show_default=True,
              help="Learning-rate decay over each stage (poly: power 0.9).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--no-amp", is_flag=True, help="Train in float32 on CUDA too (mixed precision is the default there).")
@click.option("--workers", type=Whole(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Training checkpoint (written every epoch) to continue from, with the same settings.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Training checkpoint written every epoch [default: OUTPUT with suffix .train.pt].")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None,
              help="Per-epoch JSON-lines log; its curves go beside it as .png [default: OUTPUT with suffix "
                   ".train.jsonl].")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option("--force", is_flag=True,
              help="Replace existing output files (the checkpoint, --checkpoint, --log and its curves); never "
                   "anything the run reads.")
def train_cmd(model, weights, init, backbone_weights, backbone_layout, data_dir, val_dir, split, val_split, epochs1,
              epochs2, batch, lr, alpha, exit_dropout, seed, crop, threads, scale, jitter, schedule, device, no_amp,
              workers, resume, checkpoint, log_file, output, force):
    """Train a multi-exit model with the MESS two-stage recipe and save its state_dict.

    Under torchrun (python -m mesc.training.dist) every process runs this with the same
    arguments; --batch is the global batch."""
    require("torch", purpose="mesc train")  # one line naming the extra, not training's ImportError
    from mesc.exporters.model_spec import load_model, model_file
    from mesc.training.config import TrainConfig
    from mesc.training.loop import check_outputs, train

    for name, value in (("--backbone-weights", backbone_weights), ("--init", init)):
        if weights is not None and value is not None:
            raise MescError(f"--weights already sets every weight of the model: give it or {name}, not both")
    if init is not None and backbone_weights is not None:
        raise MescError("--init already sets the backbone: give it or --backbone-weights, not both")
    if crop is not None:
        from mesc.datasets.synthetic import parse_size

        crop = parse_size(crop, "--crop")
    from pathlib import Path

    scale = _parse_scale(scale)
    stem = Path(output).with_suffix("")
    checkpoint = checkpoint or f"{stem}.train.pt"
    log_file = log_file or f"{stem}.train.jsonl"
    plot = str(Path(log_file).with_suffix(".png"))
    # what the model is made from; train() adds the data folders, --init, --backbone-weights, --resume
    model_inputs = [("--weights", weights), ("--model", model_file(model))]
    # every output checked before the model is even loaded (train() checks again)
    check_outputs(output, checkpoint, log_file, plot, force,
                  [("--data", data_dir), ("--val", val_dir), ("--init", init),
                   ("--backbone-weights", backbone_weights), *model_inputs], resume)
    net, _ = load_model(model, weights=weights, **_from_scratch(model))
    if getattr(net, "init_report", None) is not None and init is None and weights is None:
        click.echo(net.init_report.summary())  # a factory that starts from a shipped backbone (demo-search)
    cfg = TrainConfig(epochs1=epochs1, epochs2=epochs2, batch=batch, lr=lr, alpha=alpha, exit_dropout=exit_dropout,
                      seed=seed,
                      crop=crop, threads=threads, scale=scale, jitter=jitter, schedule=schedule, device=device,
                      amp=not no_amp, workers=workers)
    summary = train(net, data_dir, out=output, config=cfg, val_dir=val_dir, log=click.echo, force=force,
                    checkpoint=checkpoint, resume=resume, log_file=log_file, plot=plot, inputs=model_inputs,
                    backbone_weights=backbone_weights, backbone_layout=backbone_layout, split=split,
                    val_split=val_split, init=init)
    if "checkpoint" in summary:
        click.echo(f"saved {output} after {summary['seconds']} s")
