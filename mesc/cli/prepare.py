"""``mesc prepare``: FP16 and INT8 graphs in a package."""

from __future__ import annotations

import click

from mesc.cli.options import Whole, parse_name_list, policy_pooling_option


@click.command("prepare")
@click.argument("package", type=click.Path())
@click.option("--precision", "precisions", callback=parse_name_list, default="fp16,int8", show_default=True,
              help="Comma-separated graphs to prepare: fp16, int8.")
@click.option("--calib-data", type=click.Path(), default=None,
              help="Folder of calibration images at the export size (needed for int8; checks accuracy for both).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="INT8 activation range calibration.")
@click.option("--max-images", type=Whole(min=1), default=64, show_default=True,
              help="Calibration images to use at most.")
@click.option("--target", "-t", default=None,
              help="Deployment target the graphs are for (see 'mesc build --list-targets'): with --policy-pooling "
                   "auto, their policy graphs use the form cheapest there.")
@policy_pooling_option("the --target's form where exact; without --target, the package's own")
def prepare_cmd(package, precisions, calib_data, method, max_images, target, policy_pooling):
    """Write FP16 and explicit-INT8 (Q/DQ) ONNX graphs into a package and check them against FP32."""
    from mesc.calibration.precision import format_report, prepare

    results = prepare(package, precisions, calib_data=calib_data, method=method, max_images=max_images,
                      progress=lambda m: click.echo(m, err=True), target=target, policy_pooling=policy_pooling)
    click.echo(format_report(results))
