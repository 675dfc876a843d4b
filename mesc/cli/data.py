"""``mesc data``: what a data folder holds."""

from __future__ import annotations

import json

import click


@click.group("data")
def data_cmd():
    """Inspect segmentation data sets (Cityscapes, Pascal VOC, SBD, MS COCO, mesc folders)."""


@data_cmd.command("check")
@click.argument("folder", type=click.Path())
@click.option("--split", default=None, help="One split (e.g. train, val); default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_cmd(folder, split, as_json):
    """Report format, split sizes, classes, label histogram and images without labels."""
    from mesc.datasets.check import check, format_check

    rep = check(folder, split)
    click.echo(json.dumps(rep, indent=1) if as_json else format_check(rep))
