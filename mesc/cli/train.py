"""``mesc train``: MESS two-stage training."""

from __future__ import annotations

import click

from mesc.errors import MescError


def _from_scratch(model: str) -> dict:
    """Factory arguments that stop a registered model loading its shipped weights: training
    starts from --weights or from scratch, never silently from a bundled checkpoint."""
    import inspect

    from mesc import models

    if ":" in model or model not in models.list_models():
        return {}
    return {"pretrained": False} if "pretrained" in inspect.signature(models.get_factory(model)).parameters else {}


@click.command("train")
@click.option("--model", "-m", required=True,
              help="Registered name, module:factory, or path/to/file.py:factory.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to start from.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Labelled training folder.")
@click.option("--val", "val_dir", type=click.Path(), default=None, help="Labelled folder for per-exit mIoU.")
@click.option("--split", default=None, help="Split of --data to train on (e.g. train); default: all.")
@click.option("--val-split", default=None, help="Split of --val to score (e.g. val); default: all.")
@click.option("--epochs1", type=int, default=10, show_default=True, help="Stage 1 (exit dropout) epochs.")
@click.option("--epochs2", type=int, default=5, show_default=True, help="Stage 2 (PFD, early heads) epochs.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--alpha", type=float, default=1.0, show_default=True, help="PFD weight of the KL term.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--crop", default=None, help="Train on random HxW crops (e.g. 64x128); default whole images.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing checkpoint file.")
def train_cmd(model, weights, data_dir, val_dir, split, val_split, epochs1, epochs2, batch, lr, alpha, seed, crop, threads, output,
              force):
    """Train a multi-exit model with the MESS two-stage recipe and save its state_dict."""
    from mesc.exporters.loader import load_model, model_file
    from mesc.training import TrainConfig, check_output, train

    for name, value in (("--epochs1", epochs1), ("--epochs2", epochs2)):
        if value < 0:
            raise MescError(f"{name} must be >= 0, got {value}")
    if batch < 2:
        raise MescError(f"--batch must be at least 2 (BatchNorm), got {batch}")
    if lr <= 0:
        raise MescError(f"--lr must be positive, got {lr}")
    if crop is not None:
        from mesc.data import parse_size

        crop = parse_size(crop, "--crop")
    check_output(output, force, inputs=[("--data", data_dir), ("--val", val_dir), ("--weights", weights),
                                        ("--model", model_file(model))])
    net, _ = load_model(model, weights=weights, **_from_scratch(model))
    cfg = TrainConfig(epochs1=epochs1, epochs2=epochs2, batch=batch, lr=lr, alpha=alpha, seed=seed,
                      crop=crop, threads=threads)
    summary = train(net, data_dir, out=output, config=cfg, val_dir=val_dir, log=click.echo, force=force,
                    split=split, val_split=val_split)
    click.echo(f"saved {output} after {summary['seconds']} s")
