"""``mesc eval``: mIoU per exit and per class, pixel accuracy, at the labels' resolution."""

from __future__ import annotations

import click

from mesc.cli.options import Whole, backend_options


@click.command("eval")
@click.argument("package", type=click.Path())
@click.option("--data", "-d", required=True, type=click.Path(),
              help="Labelled folder (images/ + masks/, or a Cityscapes, VOC, SBD or COCO tree).")
@click.option("--split", default=None, help="Which split of the data folder (e.g. val), where its layout has splits.")
@click.option("--resize", is_flag=True, help="Resize images (bilinear) to the package input; masks keep their "
                                             "resolution, where the logits are scored.")
@click.option("--batch", type=Whole(min=1), default=8, show_default=True, help="Images per run.")
@click.option("--limit", type=Whole(min=1), default=None, help="Use only the first N images.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the rows and per-class IoU as JSON here.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
@backend_options
def eval_cmd(package, data, split, resize, batch, limit, json_path, force, backend, device):
    """Score every exit (budgeted) and the package's input-dependent policy on a labelled set:
    the logits are resized bilinearly to each mask, then argmax, as segmentation toolkits score."""
    from mesc.evaluation.evaluate import evaluate_package, format_table

    ev = evaluate_package(package, data, split=split, resize=resize, backend=backend, device=device, batch=batch,
                          limit=limit, json=json_path, force=force, progress=True)
    click.echo(format_table(ev))
    if json_path:
        click.echo(f"json             {json_path}")
