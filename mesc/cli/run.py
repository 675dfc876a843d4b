"""``mesc run``: segment images with early exit."""

from __future__ import annotations

import click

from mesc.cli.options import Real, Whole, cuda_graphs_option, engine_build_options, parse_thresholds
from mesc.errors import MescError


@click.command("run")
@click.argument("package", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the label PNGs, results.csv and results.json.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@engine_build_options
@cuda_graphs_option
@click.option("--exit", "exit_key", default=None,
              help="Budgeted mode: always take this exit (name or 0-based position); runs only what it needs.")
@click.option("--th-img", callback=parse_thresholds, default=None,
              help="Image-level exit threshold: one for all exits or one per exit, comma-separated.")
@click.option("--th-pix", callback=parse_thresholds, default=None,
              help="Pixel confidence threshold: one for all exits or one per exit.")
@click.option("--batch", type=Whole(min=1), default=1, show_default=True,
              help="Images per call (needs a package exported with --dynamic-batch to pay off).")
@click.option("--deadline", type=Real(min=0, min_open=True), default=None, metavar="MS",
              help="Anytime mode: per call, start no segment that the latencies recorded by mesc bench --record "
                   "say cannot reach its exit within MS milliseconds; keep the last prediction in time.")
@click.option("--resize", is_flag=True, help="Resize images of another size to the package input (else refused).")
@click.option("--force", is_flag=True, help="Replace a previous run's output folder (a folder holding other files "
                                          "is refused).")
def run_cmd(package, images, output, backend, device, target, precision, cuda_graphs, exit_key, th_img, th_pix, batch,
            deadline, resize, force):
    """Segment IMAGES (files or folders) with early exit; write palette PNGs and a results table.

    Images that cannot be read are reported and skipped; the exit status is then 1.
    """
    from mesc.runtime import load
    from mesc.runtime.files import check_output, run_files
    from mesc.runtime.thresholds import per_exit

    check_output(output, images, package, force)  # refuse before loading anything
    pipe = load(package, backend=backend, device=device, target=target, precision=precision, cuda_graphs=cuda_graphs)
    with pipe:
        for key, vals in (("th_img", th_img), ("th_pix", th_pix)):
            if vals is None:
                continue
            try:
                vals = per_exit(vals, pipe.exit_names)
            except ValueError as err:
                raise MescError(f"--{key.replace('_', '-')} gives {err}") from None
            for name, v in zip(pipe.exit_names, vals):
                pipe.set_thresholds(name, **{key: v})
        if exit_key is not None and exit_key.isdigit():
            exit_key = int(exit_key)
        if exit_key is not None:
            pipe.pkg.exit(exit_key)  # a bad name fails here, before any image is read
            if deadline is not None:
                raise MescError("--deadline runs anytime mode, which --exit (budgeted mode) rules out: give one")
        if deadline is not None and pipe.segment_latency() is None:
            click.echo("note: no latencies recorded for this backend and device (mesc bench --record): "
                       "each call stops at the first exit after the deadline", err=True)
        summary = run_files(pipe, images, output, exit=exit_key, resize=resize, batch=batch, force=force,
                            echo=lambda m: click.echo(m, err=True), deadline_ms=deadline)
    click.echo(summary.format())
    click.echo(f"wrote {output}/results.csv and results.json")
    if summary.failed:
        ctx = click.get_current_context()
        ctx.exit(1)
