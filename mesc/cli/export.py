"""``mesc export``: split a multi-exit PyTorch model into a package; with ``--target`` /
``--precision`` also prepare it for a device and build its engines where TensorRT is here."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from mesc.cli.options import Real, Whole, parse_int_list, parse_shape, policy_pooling_option
from mesc.exporters.export import EXPORT_EDGE_BANDS


@click.command("export")
@click.option("--model", "-m", default=None,
              help="Registered name (see --list-models), module:factory, or path/to/file.py:factory. "
                   "Default: the embedded demo model.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (state_dict) to load into the model.")
@click.option("--num-classes", type=Whole(min=1), default=None, help="Classes, for factories that take num_classes.")
@click.option("--input-shape", callback=parse_shape, default=None,
              help="Fixed input shape NxCxHxW (default: the model's own, else 1x3x512x1024).")
@click.option("--exits", callback=parse_int_list, default=None,
              help="Exits to keep, 0-based positions in the model's output sequence, candidate heads counted one "
                   "by one (default: all).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic in every segment.")
@click.option("--opset", type=Whole(13, 20, check="mesc.exporters.onnx_io:check_opset"), default=17, show_default=True,
              help="ONNX opset, 13 to 20: 17 for TensorRT 8.5/8.6, 18 to 20 for TensorRT 10 and later.")
@click.option("--capture", type=click.Choice(["export", "fx"]), default="export", show_default=True,
              help="Graph capture: torch.export (takes shape unpacking, views, dicts of states) or torch.fx "
                   "symbolic tracing (the fallback).")
@click.option("--strict", is_flag=True, help="torch.export's strict mode (TorchDynamo) instead of non-strict.")
@click.option("--policy", "policy_kind", type=click.Choice(["top1", "entropy", "none"]), default="top1",
              show_default=True, help="In-graph exit policy confidence ('none': logits only).")
@click.option("--no-edge", is_flag=True, help="Disable the semantic-edge median enhancement.")
@click.option("--edge-band", type=click.Choice(EXPORT_EDGE_BANDS), default="paper", show_default=True,
              help="Semantic edge band where confidence is median-filtered: 'paper' (MESS Eq. 8: the label "
                   "edges grown by the output stride, os wide). Packages with the earlier 'wide' band (a label "
                   "change within the (2os+1)^2 window) still load and run; it is no longer exported, as it "
                   "calibrated to no lower latency.")
@click.option("--policy-at", type=click.Choice(["output", "native"]), default="output", show_default=True,
              help="Where the policy reads each exit's logits: at the output resolution (MESS), or at the "
                   "head's native resolution before upsampling (os^2 fewer pixels: much cheaper on CPU).")
@policy_pooling_option("'pool' with --target/--precision where exact, else 'shift'")
@click.option("--stride", "strides", callback=parse_int_list, default=None,
              help="Output stride per kept exit for the policy (default: measured from the graph).")
@click.option("--th-pix", type=Real(0, 1), default=None, help="Default per-pixel confidence threshold.")
@click.option("--th-img", type=Real(0, 1), default=None, help="Default image-level exit threshold.")
@click.option("--from-report", type=click.Path(dir_okay=False), default=None,
              help="A 'mesc calibrate --report' file: export the lean instance, only its chosen exits (at most one "
                   "candidate head per exit point, names kept) with its thresholds.")
@click.option("--class-names", type=click.Path(exists=True), default=None,
              help="Class names, one per line (a classes.txt, or a data folder holding one or of a known layout): "
                   "stored in the package with fixed colours for overlays.")
@click.option("--host-normalize", is_flag=True,
              help="Write no entry segment: uint8 images are then normalised on the host (float32 NxCxHxW "
                   "uploaded), as in packages written before entries. Default: the package's first segment "
                   "takes uint8 NxHxWxC and normalises on the device (a quarter of the upload).")
@click.option("--no-verify", is_flag=True, help="Skip running the segments against the PyTorch model.")
@click.option("--target", "-t", default=None,
              help="Deployment target (see 'mesc build --list-targets'): prepare the package for it and build "
                   "its TensorRT engines where TensorRT and that GPU are here (default with --precision: host).")
@click.option("--precision", "-p", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Precision for --target: fp16/int8 graphs are prepared and checked against FP32 (default: fp32).")
@click.option("--calib-data", type=click.Path(), default=None,
              help="Calibration images at the export size (needed for int8; checks fp16's accuracy).")
@click.option("--max-images", type=Whole(min=1), default=64, show_default=True,
              help="Calibration images to use at most.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Package directory to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing package directory.")
@click.option("--verbose", "-v", is_flag=True, help="Show what torch prints while exporting.")
@click.option("--list-models", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, p, v: _list_models(ctx) if v else None,
              help="List the registered reference models and exit.")
def export_cmd(model, weights, num_classes, input_shape, exits, dynamic_batch, opset, capture, strict, policy_kind,
               no_edge, edge_band, policy_at, policy_pooling, strides, th_pix, th_img, from_report, class_names,
               host_normalize,
               no_verify, target, precision, calib_data, max_images, output, force, verbose):
    """Split a multi-exit PyTorch model into a package of per-segment ONNX graphs.

    \b
    With --target/--precision, in one go: export, prepare the FP16/INT8 graphs, and build the
    TensorRT engines where TensorRT is here (else print the one command to run on the device).
    """
    from mesc.exporters.export import ExportOptions, export
    from mesc.exporters.report import print_summary

    deploy = target is not None or precision is not None
    if deploy:
        target, precision = target or "host", precision or "fp32"
        _check_deployment(target, precision, calib_data)
    elif calib_data:
        raise click.UsageError("--calib-data goes with --precision fp16 or int8")
    opts = ExportOptions(
        input_shape=input_shape, exits=exits, dynamic_batch=dynamic_batch, opset=opset,
        policy=None if policy_kind == "none" else policy_kind, edge=not no_edge, edge_band=edge_band,
        policy_at=policy_at, policy_pooling=policy_pooling, target=target,
        strides=strides,
        th_pix=th_pix, th_img=th_img, from_report=from_report, verify=not no_verify, verbose=verbose,
        capture=capture, strict=strict, precision=precision or "fp32", class_names=class_names,
        host_normalize=host_normalize,
    )
    if not deploy:
        pkg = export(model, output, weights=weights, num_classes=num_classes, options=opts, force=force,
                     progress=True)
        print_summary(pkg)
        return
    from mesc.exporters.model_spec import model_file
    from mesc.package.outputs import check_dir_output
    from mesc.package import Package
    from mesc.package.staging import staging_dir

    # export() checks the staging directory it is given; the real output is checked here
    check_dir_output(output, "package", force, inputs=[("--weights", weights), ("--model", model_file(model)),
                                                       ("--calib-data", calib_data), ("--from-report", from_report),
                                                       ("--class-names", class_names)])
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    # export and prepare in one staging directory: a failure in either leaves no package
    with staging_dir(output, force=force) as stage:
        # the staging directory exists (empty): export replaces it with the package
        export(model, stage, weights=weights, num_classes=num_classes, options=opts, force=True, progress=True)
        if precision != "fp32":
            from mesc.calibration.precision import format_report, prepare

            # the heads were compiled for the target already: the prepared graphs keep them
            click.echo(format_report(prepare(stage, (precision,), calib_data=calib_data, max_images=max_images,
                                             progress=say)))
    print_summary(Package.load(output))
    if _builds_here(target):
        from mesc.engines.build import build

        entry = build(output, target, precision, max_images=max_images, progress=say)
        click.echo(f"{len(entry['segments'])} {target} {precision} engines in {Path(output) / entry['dir']} "
                   f"(TensorRT {entry['trt_version']})")
        return
    click.echo(device_commands(output, target, precision))


def _check_deployment(target: str, precision: str, calib_data) -> None:
    """Refuse what the target cannot build before anything is exported."""
    from mesc.errors import MescError
    from mesc.targets import check_build_request, get_target

    check_build_request(get_target(target), precision, None)
    if precision == "int8" and not calib_data:
        raise MescError("--precision int8 needs calibration images: pass --calib-data FOLDER (images at the "
                        "export size)")
    if precision == "fp32" and calib_data:
        raise MescError("--calib-data calibrates fp16/int8 graphs; fp32 needs none")
    if calib_data and not Path(calib_data).is_dir():
        raise MescError(f"--calib-data {calib_data}: not a folder of images")


def _builds_here(target: str) -> bool:
    """TensorRT is installed and this machine's GPU is one the target's engines run on."""
    from mesc.runtime import tensorrt_installed
    from mesc.runtime.devices import compute_capability, visible_cuda_devices
    from mesc.targets import get_target

    if not tensorrt_installed() or not visible_cuda_devices():
        return False
    wanted = get_target(target).compute_capabilities
    return wanted is None or compute_capability(0) in wanted


def device_commands(output, target: str, precision: str) -> str:
    """What to run on the device for a package prepared here (its FP16/INT8 graphs are in it, so
    the build needs no calibration images)."""
    args = f"{shlex.quote(str(output))} --target {target} --precision {precision}"
    return (f"TensorRT or the {target} GPU is not here: {output} is prepared for {target} {precision}.\n"
            f"On the device, build the engines with:\n  mesc build {args}\n"
            f"and check them against ONNX Runtime with:\n  mesc selftest {args}")


def _list_models(ctx):
    from mesc.models import list_models

    for name, doc in list_models().items():
        click.echo(f"{name:24s} {doc}")
    ctx.exit(0)
