"""``mesc selftest``: check this device's engines against ONNX Runtime CPU FP32 and say PASS or FAIL."""

from __future__ import annotations

import click

from mesc.cli.options import Whole


@click.command("selftest")
@click.argument("package", type=click.Path(), required=False)
@click.option("--target", "-t", default="host", show_default=True, help="TensorRT target of the engines to check.")
@click.option("--precision", "-p", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--backend", type=click.Choice(["tensorrt", "onnxruntime"]), default=None,
              help="Backend under test (default: TensorRT on a CUDA device where installed, else ONNX Runtime).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 where a CUDA device answers).")
@click.option("--images", type=Whole(min=1), default=16, show_default=True, help="Images to compare on.")
@click.option("--runs", type=Whole(min=1), default=5, show_default=True,
              help="Timed runs per segment (the median is shown).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the whole report here (attach it to bug reports).")
@click.option("--force", is_flag=True, help="Overwrite an existing --json report.")
@click.pass_context
def selftest_cmd(ctx, package, target, precision, backend, device, images, runs, json_path, force):
    """Run every segment and exit of PACKAGE (default: the demo model, exported here) on this
    device beside ONNX Runtime CPU FP32; one PASS/FAIL line per check, exit status 1 on a FAIL."""
    from mesc.selftest import format_report, selftest

    report = selftest(package, target=target, precision=precision, backend=backend, device=device, images=images,
                      runs=runs, json_path=json_path, progress=lambda m: click.echo(m, err=True), force=force)
    click.echo(format_report(report))
    if json_path:
        click.echo(f"report written to {json_path}")
    if not report["passed"]:
        ctx.exit(1)
