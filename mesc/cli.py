"""The ``mesc`` command line: a thin layer over the library functions.

Each command parses options, calls the function a library user would call, and prints.
Heavy modules are imported inside the commands so ``mesc --help`` stays light.
"""

from __future__ import annotations

import sys

import click

from mesc import __version__
from mesc.errors import MescError


class _Group(click.Group):
    """Turns user errors into a one-line message and exit status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MescError as err:
            click.echo(f"mesc: error: {err}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mesc")
def cli():
    """Compile multi-exit segmentation networks into early-exit engines for the edge.

    \b
    Typical flow:
      mesc export -o pkg            split the model into per-segment ONNX
      mesc inspect pkg              show segments, exits, policy
      mesc run pkg images/ -o out   run with early exit
    """


def _parse_shape(ctx, param, value):
    if value is None:
        return None
    try:
        dims = [int(d) for d in value.lower().replace(",", "x").split("x")]
    except ValueError:
        raise click.BadParameter(f"expected NxCxHxW (e.g. 1x3x512x1024), got {value!r}")
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise click.BadParameter(f"expected four positive dims NxCxHxW (e.g. 1x3x512x1024), got {value!r}")
    return tuple(dims)


def _parse_int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated exit indices (e.g. 0,2,3), got {value!r}")


@cli.command("export")
@click.option("--model", "-m", default=None,
              help="Registered name (see --list-models), module:factory, or path/to/file.py:factory. "
                   "Default: the embedded demo model.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (state_dict) to load into the model.")
@click.option("--num-classes", type=int, default=None, help="Classes, for factories that take num_classes.")
@click.option("--input-shape", callback=_parse_shape, default=None,
              help="Fixed input shape NxCxHxW (default: the model's own, else 1x3x512x1024).")
@click.option("--exits", callback=_parse_int_list, default=None,
              help="Exits to keep, 0-based positions in the model's output sequence (default: all).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic in every segment.")
@click.option("--opset", type=int, default=17, show_default=True,
              help="ONNX opset (TensorRT 8.5/8.6 parse up to 17).")
@click.option("--policy", "policy_kind", type=click.Choice(["top1", "entropy", "none"]), default="top1",
              show_default=True, help="In-graph exit policy confidence ('none': logits only).")
@click.option("--no-edge", is_flag=True, help="Disable the semantic-edge median enhancement.")
@click.option("--policy-at", type=click.Choice(["output", "native"]), default="output", show_default=True,
              help="Where the policy reads each exit's logits: at the output resolution (MESS), or at the "
                   "head's native resolution before upsampling (os^2 fewer pixels: much cheaper on CPU).")
@click.option("--stride", "strides", callback=_parse_int_list, default=None,
              help="Output stride per kept exit for the policy (default: measured from the graph).")
@click.option("--th-pix", type=float, default=None, help="Default per-pixel confidence threshold.")
@click.option("--th-img", type=float, default=None, help="Default image-level exit threshold.")
@click.option("--no-verify", is_flag=True, help="Skip running the segments against the PyTorch model.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Package directory to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing package directory.")
@click.option("--list-models", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, p, v: _list_models(ctx) if v else None,
              help="List the registered reference models and exit.")
def export_cmd(model, weights, num_classes, input_shape, exits, dynamic_batch, opset, policy_kind,
               no_edge, policy_at, strides, th_pix, th_img, no_verify, output, force):
    """Split a multi-exit PyTorch model into a package of per-segment ONNX graphs."""
    from mesc.exporters.export import ExportOptions, export
    from mesc.exporters.report import print_summary

    opts = ExportOptions(
        input_shape=input_shape, exits=exits, dynamic_batch=dynamic_batch, opset=opset,
        policy=None if policy_kind == "none" else policy_kind, edge=not no_edge, policy_at=policy_at,
        strides=strides,
        th_pix=th_pix, th_img=th_img, verify=not no_verify,
    )
    pkg = export(model, output, weights=weights, num_classes=num_classes, options=opts, force=force,
                 progress=True)
    print_summary(pkg)


def _list_models(ctx):
    from mesc.models import list_models

    for name, doc in list_models().items():
        click.echo(f"{name:24s} {doc}")
    ctx.exit(0)


@cli.command("inspect")
@click.argument("package", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def inspect_cmd(package, as_json):
    """Show a package's segments, live tensors, exits and exit policy."""
    import json

    from mesc.inspect import format_package
    from mesc.package import Package

    pkg = Package.load(package)
    if as_json:
        click.echo(json.dumps(pkg.manifest, indent=2))
    else:
        click.echo(format_package(pkg))


@cli.command("synth-data")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--count", "-n", type=int, default=200, show_default=True, help="Number of scenes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Scene i depends only on (seed, i).")
@click.option("--size", default="128x256", show_default=True, help="Image size HxW.")
@click.option("--difficulty", default="0:1", show_default=True,
              help="Range LO:HI in [0, 1] the per-image difficulty is drawn from.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
def synth_data_cmd(output, count, seed, size, difficulty, force):
    """Write synthetic warehouse scenes (images/, masks/, classes.txt, meta.json)."""
    from mesc import data

    out = data.generate(output, count, seed=seed, size=data.parse_size(size),
                        difficulty=data.parse_range(difficulty), force=force, progress=True)
    click.echo(f"wrote {count} scenes to {out}")


def _from_scratch(model: str) -> dict:
    """Factory arguments that stop a registered model loading its shipped weights: training
    starts from --weights or from scratch, never silently from a bundled checkpoint."""
    import inspect

    from mesc import models

    if ":" in model or model not in models.list_models():
        return {}
    return {"pretrained": False} if "pretrained" in inspect.signature(models.get_factory(model)).parameters else {}


@cli.command("train")
@click.option("--model", "-m", required=True,
              help="Registered name, module:factory, or path/to/file.py:factory.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to start from.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Labelled training folder.")
@click.option("--val", "val_dir", type=click.Path(), default=None, help="Labelled folder for per-exit mIoU.")
@click.option("--epochs1", type=int, default=10, show_default=True, help="Stage 1 (exit dropout) epochs.")
@click.option("--epochs2", type=int, default=5, show_default=True, help="Stage 2 (PFD, early heads) epochs.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--alpha", type=float, default=1.0, show_default=True, help="PFD weight of the KL term.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--crop", default=None, help="Train on random HxW crops (e.g. 64x128); default whole images.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
def train_cmd(model, weights, data_dir, val_dir, epochs1, epochs2, batch, lr, alpha, seed, crop, threads, output):
    """Train a multi-exit model with the MESS two-stage recipe and save its state_dict."""
    from mesc.exporters.loader import load_model
    from mesc.training import TrainConfig, train

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
    net, _ = load_model(model, weights=weights, **_from_scratch(model))
    cfg = TrainConfig(epochs1=epochs1, epochs2=epochs2, batch=batch, lr=lr, alpha=alpha, seed=seed,
                      crop=crop, threads=threads)
    summary = train(net, data_dir, out=output, config=cfg, val_dir=val_dir, log=click.echo)
    click.echo(f"saved {output} after {summary['seconds']} s")


def _list_targets(ctx, param, value):
    if not value:
        return
    from mesc.engines.targets import list_targets

    for t in list_targets().values():
        cc = ",".join(f"sm_{c.replace('.', '')}" for c in t.compute_capabilities or ()) or "any GPU"
        click.echo(f"{t.name:10s} {cc:8s} TensorRT {t.trt_range():14s} {'/'.join(t.precisions):15s} "
                   f"DLA x{t.dla_cores}  {t.notes}")
    ctx.exit(0)


@cli.command("prepare")
@click.argument("package", type=click.Path())
@click.option("--precision", "precisions", default="fp16,int8", show_default=True,
              help="Comma-separated graphs to prepare: fp16, int8.")
@click.option("--calib-data", type=click.Path(), default=None,
              help="Folder of calibration images at the export size (needed for int8; checks accuracy for both).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="INT8 activation range calibration.")
@click.option("--max-images", type=int, default=64, show_default=True, help="Calibration images to use at most.")
def prepare_cmd(package, precisions, calib_data, method, max_images):
    """Write FP16 and explicit-INT8 (Q/DQ) ONNX graphs into a package and check them against FP32."""
    from mesc.calibration.precision import format_report, prepare

    wanted = tuple(p.strip() for p in precisions.split(",") if p.strip())
    results = prepare(package, wanted, calib_data=calib_data, method=method, max_images=max_images,
                      progress=lambda m: click.echo(m, err=True))
    click.echo(format_report(results))


@cli.command("build")
@click.argument("package", type=click.Path())
@click.option("--target", "-t", default="host", show_default=True, help="Deployment target (see --list-targets).")
@click.option("--precision", "-p", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--calib-data", type=click.Path(), default=None,
              help="Calibration images, for int8 when no prepared graph exists or for DLA on TensorRT 8.x.")
@click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Jetson), GPU fallback on.")
@click.option("--workspace", "workspace_mb", type=int, default=None, help="Builder workspace in MB (default: per target).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Persistent timing cache file (default: engines/<target>.timing.cache in the package).")
@click.option("--allow-slow", is_flag=True, help="Build FP16 on GPUs without fast FP16 (Pascal) anyway.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--max-images", type=int, default=64, show_default=True)
@click.option("--list-targets", is_flag=True, is_eager=True, expose_value=False, callback=_list_targets,
              help="List the known targets and exit.")
def build_cmd(package, target, precision, calib_data, dla_core, workspace_mb, timing_cache, allow_slow, method,
              max_images):
    """Build one TensorRT engine per segment for a target (run on the target device)."""
    from mesc.engines.build import build

    entry = build(package, target, precision, calib_data=calib_data, dla_core=dla_core, workspace_mb=workspace_mb,
                  timing_cache=timing_cache, allow_slow=allow_slow, method=method, max_images=max_images,
                  progress=lambda m: click.echo(m, err=True))
    click.echo(f"{len(entry['segments'])} engines in {entry['dir']} (TensorRT {entry['trt_version']}, "
               f"{entry['device']}, sm_{str(entry['compute_capability']).replace('.', '')})")
    for name, seg in entry["segments"].items():
        click.echo(f"  {name:10s} {seg['placement']['by_device']} {seg['placement']['by_precision']}")


def _parse_thresholds(ctx, param, value):
    """One value for every exit, or one per exit (comma-separated, in exit order)."""
    if value is None:
        return None
    try:
        vals = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected a number in [0, 1] or one per exit (e.g. 0.8,0.85,0), got {value!r}")
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise click.BadParameter(f"thresholds must be in [0, 1], got {value!r}")
    return vals


@cli.command("run")
@click.argument("package", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the label PNGs, results.csv and results.json.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--target", default=None, help="TensorRT engines: which target's build (default: the one for this GPU).")
@click.option("--precision", default=None, help="TensorRT engines: which precision build, e.g. int8 or fp16-dla0.")
@click.option("--exit", "exit_key", default=None,
              help="Budgeted mode: always take this exit (name or 0-based position); runs only what it needs.")
@click.option("--th-img", callback=_parse_thresholds, default=None,
              help="Image-level exit threshold: one for all exits or one per exit, comma-separated.")
@click.option("--th-pix", callback=_parse_thresholds, default=None,
              help="Pixel confidence threshold: one for all exits or one per exit.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per call (needs a package exported with --dynamic-batch to pay off).")
@click.option("--resize", is_flag=True, help="Resize images of another size to the package input (else refused).")
@click.option("--force", is_flag=True, help="Write into a non-empty output folder.")
def run_cmd(package, images, output, backend, device, target, precision, exit_key, th_img, th_pix, batch, resize,
            force):
    """Segment IMAGES (files or folders) with early exit; write palette PNGs and a results table.

    Images that cannot be read are reported and skipped; the exit status is then 1.
    """
    from mesc.runtime import load
    from mesc.runtime.files import prepare_output, run_files

    prepare_output(output, force)  # refuse before loading anything
    pipe = load(package, backend=backend, device=device, target=target, precision=precision)
    with pipe:
        for key, vals in (("th_img", th_img), ("th_pix", th_pix)):
            if vals is None:
                continue
            if len(vals) not in (1, len(pipe.exit_names)):
                raise MescError(f"--{key.replace('_', '-')} gives {len(vals)} values for {len(pipe.exit_names)} exits "
                                f"({', '.join(pipe.exit_names)}); give one, or one per exit")
            for name, v in zip(pipe.exit_names, vals * len(pipe.exit_names) if len(vals) == 1 else vals):
                pipe.set_thresholds(name, **{key: v})
        if exit_key is not None and exit_key.isdigit():
            exit_key = int(exit_key)
        if exit_key is not None:
            pipe.pkg.exit(exit_key)  # a bad name fails here, before any image is read
        summary = run_files(pipe, images, output, exit=exit_key, resize=resize, batch=batch, force=True,
                            echo=lambda m: click.echo(m, err=True))
    click.echo(summary.format())
    click.echo(f"wrote {output}/results.csv and results.json")
    if summary.failed:
        ctx = click.get_current_context()
        ctx.exit(1)


@cli.command("calibrate")
@click.argument("package", type=click.Path())
@click.option("--data", "-d", required=True, type=click.Path(),
              help="Labelled calibration folder (images/ + masks/, or Cityscapes layout).")
@click.option("--max-drop", type=float, default=None,
              help="Minimise expected cost with mIoU >= final-exit mIoU - PP (percentage points).")
@click.option("--max-cost", default=None,
              help="Maximise mIoU with expected cost <= COST (ms when latencies are recorded, else MFLOPs), "
                   "or N% of the final-exit cost.")
@click.option("--policy", type=click.Choice(["mess", "mean_top1", "mean_entropy", "fft"]), default="mess",
              show_default=True, help="Exit policy to calibrate (only mess thresholds can be stored with --write).")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write a JSON report here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write the cost vs mIoU Pareto plot (PNG) here (needs mesc[plot]).")
@click.option("--write", is_flag=True, help="Store the chosen thresholds in the package manifest.")
@click.option("--resize", is_flag=True, help="Resize images (bilinear) and masks (nearest) to the package input.")
@click.option("--cache", type=click.Path(dir_okay=False), default=None,
              help="Memo cache (.npz): reused when package, data and grid are unchanged.")
@click.option("--latency-key", default=None, help="Which recorded latency to use (default: the first).")
@click.option("--all-exits", is_flag=True, help="Keep every exit (search thresholds only).")
@click.option("--th-img-steps", type=int, default=50, show_default=True, help="th_img values per exit and th_pix.")
@click.option("--compare-policies", is_flag=True, help="Also calibrate the other policies, for the report.")
@click.option("--limit", type=int, default=None, help="Use only the first N images.")
def calibrate_cmd(package, data, max_drop, max_cost, policy, report, plot, write, resize, cache, latency_key,
                  all_exits, th_img_steps, compare_policies, limit):
    """Choose exits and thresholds on a labelled set: least expected cost within an mIoU drop,
    or best mIoU within a cost."""
    from mesc.calibration.exits import calibrate, format_report

    if th_img_steps < 2:
        raise MescError(f"--th-img-steps must be at least 2, got {th_img_steps}")
    out = calibrate(package, data, max_drop=max_drop, max_cost=max_cost, policy=policy, report=report, plot=plot,
                    write=write, resize=resize, cache=cache, latency_key=latency_key, all_exits=all_exits,
                    th_img_steps=th_img_steps, compare_policies=compare_policies, limit=limit, progress=True)
    click.echo(format_report(out.report))
    if report:
        click.echo(f"report           {report}")
    if plot:
        click.echo(f"plot             {plot}")
    if write:
        dropped = out.report.get("chosen", {}).get("exits", [])
        off = [e for e in out.memo.exits if e not in dropped]
        click.echo(f"written          thresholds to {package}/mesc.json"
                   + (f"; disabled exits: {', '.join(off)}" if off else ""))


@cli.command("bench")
@click.argument("package", type=click.Path())
@click.option("--backend", default="onnxruntime", show_default=True, help="onnxruntime or tensorrt.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--target", default=None, help="TensorRT engines: which target's build (default: the one for this GPU).")
@click.option("--precision", default=None, help="TensorRT engines: which precision build, e.g. int8 or fp16-dla0.")
@click.option("--batch", type=int, default=1, show_default=True, help="Images per run.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed rounds first.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed rounds.")
@click.option("--threads", type=int, default=None, help="CPU threads per session (default: all cores).")
@click.option("--data", type=click.Path(), default=None,
              help="Image folder: input-dependent end to end against final-only, image by image.")
@click.option("--resize", is_flag=True, help="With --data: resize images of another size (else skipped).")
@click.option("--baseline", "baselines", default="monolithic,eager", show_default=True,
              help="Comma-separated baselines: monolithic, eager, or none.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write every figure here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of latency per exit against FLOPs, with the baselines (needs mesc[plot]).")
@click.option("--record", is_flag=True,
              help="Store the per-segment medians in the manifest (what 'mesc calibrate' costs exits with).")
def bench_cmd(package, backend, device, target, precision, batch, warmup, iters, threads, data, resize, baselines,
              json_out, plot, record):
    """Latency per segment and per exit of PACKAGE, against a monolithic graph and eager PyTorch."""
    from mesc.benchmarks.bench import BenchOptions, bench, format_result, plot as plot_result, record_latency, \
        write_json

    chosen = tuple(b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none")
    opts = BenchOptions(backend=backend, device=device, target=target, precision=precision, batch=batch,
                        warmup=warmup, iters=iters, data=data, resize=resize, baselines=chosen, threads=threads)
    if plot:
        from mesc.lazy import require

        require("matplotlib", extra="plot", purpose="mesc bench --plot")  # before minutes of timing
    result = bench(package, opts, progress=True, say=lambda m: click.echo(m, err=True))
    click.echo(format_result(result))
    if json_out:
        write_json(json_out, result)
        click.echo(f"json             {json_out}")
    if plot:
        plot_result(plot, result)
        click.echo(f"plot             {plot}")
    if record:
        key = record_latency(package, result)
        click.echo(f"recorded         per-segment medians under latency['{key}'] in {package}/mesc.json")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="mesc", standalone_mode=True)
    except MescError as err:  # errors raised while parsing, outside a command
        click.echo(f"mesc: error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
