"""``mesc export``: split a multi-exit PyTorch model into a package."""

from __future__ import annotations

import click

from mesc.cli.options import parse_int_list, parse_shape


@click.command("export")
@click.option("--model", "-m", default=None,
              help="Registered name (see --list-models), module:factory, or path/to/file.py:factory. "
                   "Default: the embedded demo model.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (state_dict) to load into the model.")
@click.option("--num-classes", type=int, default=None, help="Classes, for factories that take num_classes.")
@click.option("--input-shape", callback=parse_shape, default=None,
              help="Fixed input shape NxCxHxW (default: the model's own, else 1x3x512x1024).")
@click.option("--exits", callback=parse_int_list, default=None,
              help="Exits to keep, 0-based positions in the model's output sequence (default: all).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic in every segment.")
@click.option("--opset", type=int, default=17, show_default=True,
              help="ONNX opset, 13 to 20 (TensorRT 8.5/8.6 parse up to 17).")
@click.option("--policy", "policy_kind", type=click.Choice(["top1", "entropy", "none"]), default="top1",
              show_default=True, help="In-graph exit policy confidence ('none': logits only).")
@click.option("--no-edge", is_flag=True, help="Disable the semantic-edge median enhancement.")
@click.option("--policy-at", type=click.Choice(["output", "native"]), default="output", show_default=True,
              help="Where the policy reads each exit's logits: at the output resolution (MESS), or at the "
                   "head's native resolution before upsampling (os^2 fewer pixels: much cheaper on CPU).")
@click.option("--stride", "strides", callback=parse_int_list, default=None,
              help="Output stride per kept exit for the policy (default: measured from the graph).")
@click.option("--th-pix", type=float, default=None, help="Default per-pixel confidence threshold.")
@click.option("--th-img", type=float, default=None, help="Default image-level exit threshold.")
@click.option("--no-verify", is_flag=True, help="Skip running the segments against the PyTorch model.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Package directory to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing package directory.")
@click.option("--verbose", "-v", is_flag=True, help="Show what torch prints while exporting.")
@click.option("--list-models", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, p, v: _list_models(ctx) if v else None,
              help="List the registered reference models and exit.")
def export_cmd(model, weights, num_classes, input_shape, exits, dynamic_batch, opset, policy_kind,
               no_edge, policy_at, strides, th_pix, th_img, no_verify, output, force, verbose):
    """Split a multi-exit PyTorch model into a package of per-segment ONNX graphs."""
    from mesc.exporters.export import ExportOptions, export
    from mesc.exporters.report import print_summary

    opts = ExportOptions(
        input_shape=input_shape, exits=exits, dynamic_batch=dynamic_batch, opset=opset,
        policy=None if policy_kind == "none" else policy_kind, edge=not no_edge, policy_at=policy_at,
        strides=strides,
        th_pix=th_pix, th_img=th_img, verify=not no_verify, verbose=verbose,
    )
    pkg = export(model, output, weights=weights, num_classes=num_classes, options=opts, force=force,
                 progress=True)
    print_summary(pkg)


def _list_models(ctx):
    from mesc.models import list_models

    for name, doc in list_models().items():
        click.echo(f"{name:24s} {doc}")
    ctx.exit(0)
