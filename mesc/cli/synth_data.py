"""``mesc synth-data``: labelled synthetic scenes."""

from __future__ import annotations

import click

from mesc.cli.options import Whole


@click.command("synth-data")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--count", "-n", type=Whole(min=1), default=200, show_default=True, help="Number of scenes.")
@click.option("--seed", type=Whole(0, 2**32 - 1), default=0, show_default=True,
              help="Scene i depends only on (seed, i).")
@click.option("--size", default="128x256", show_default=True, help="Image size HxW.")
@click.option("--difficulty", default="0:1", show_default=True,
              help="Range LO:HI in [0, 1] the per-image difficulty is drawn from.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
def synth_data_cmd(output, count, seed, size, difficulty, force):
    """Write synthetic warehouse scenes (images/, masks/, classes.txt, meta.json)."""
    from mesc.datasets import synthetic

    out = synthetic.generate(output, count, seed=seed, size=synthetic.parse_size(size),
                             difficulty=synthetic.parse_range(difficulty), force=force, progress=True)
    click.echo(f"wrote {count} scenes to {out}")
