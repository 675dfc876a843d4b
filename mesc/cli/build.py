"""``mesc build``: TensorRT engines for a target."""

from __future__ import annotations

import click

from mesc.cli.options import Whole, policy_pooling_option


def _list_targets(ctx, param, value):
    if not value:
        return
    from mesc.targets import list_targets

    for t in list_targets().values():
        cc = ",".join(f"sm_{c.replace('.', '')}" for c in t.compute_capabilities or ()) or "any GPU"
        click.echo(f"{t.name:10s} {cc:8s} TensorRT {t.trt_range():14s} {'/'.join(t.precisions):15s} "
                   f"DLA x{t.dla_cores}  {t.notes}")
    ctx.exit(0)


@click.command("build")
@click.argument("package", type=click.Path())
@click.option("--target", "-t", default="host", show_default=True, help="Deployment target (see --list-targets).")
@click.option("--precision", "-p", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--calib-data", type=click.Path(), default=None,
              help="Calibration images, for int8 when no prepared graph exists or for DLA on TensorRT 8.x.")
@click.option("--dla-core", type=Whole(min=0), default=None, help="Build for this DLA core (Jetson), GPU fallback on.")
@click.option("--workspace", "workspace_mb", type=Whole(min=1), default=None,
              help="Builder workspace in MB (default: per target).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Persistent timing cache file (default: engines/<target>.trt<version>.sm<cc>.timing.cache "
                   "in the package).")
@click.option("--max-batch", type=Whole(min=1), default=None,
              help="Largest batch the engines of a dynamic-batch package take (default: per target, 8); "
                   "on DLA the one batch they take (default 1).")
@click.option("--no-tf32", "tf32", is_flag=True, flag_value=False, default=True,
              help="Build FP32 engines without TF32 (Ampere and later use it by default).")
@click.option("--allow-slow", is_flag=True, help="Build FP16 on GPUs without fast FP16 (Pascal) anyway.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--max-images", type=Whole(min=1), default=64, show_default=True)
@policy_pooling_option("the target's form where exact (FP32 heads in another form are recompiled beside the "
                       "engines; prepared graphs keep theirs: 'mesc prepare --target')")
@click.option("--list-targets", is_flag=True, is_eager=True, expose_value=False, callback=_list_targets,
              help="List the known targets and exit.")
def build_cmd(package, target, precision, calib_data, dla_core, workspace_mb, timing_cache, max_batch, tf32,
              allow_slow, method, max_images, policy_pooling):
    """Build one TensorRT engine per segment for a target (run on the target device)."""
    from mesc.engines.build import build

    entry = build(package, target, precision, calib_data=calib_data, dla_core=dla_core, workspace_mb=workspace_mb,
                  timing_cache=timing_cache, allow_slow=allow_slow, method=method, max_images=max_images,
                  max_batch=max_batch, tf32=tf32,
                  progress=lambda m: click.echo(m, err=True), policy_pooling=policy_pooling)
    click.echo(f"{len(entry['segments'])} engines in {entry['dir']} (TensorRT {entry['trt_version']}, "
               f"{entry['device']}, sm_{str(entry['compute_capability']).replace('.', '')})")
    for name, seg in entry["segments"].items():
        pinned = f"  policy layers kept FP32: {seg['policy_fp32_layers']}" if "policy_fp32_layers" in seg else ""
        click.echo(f"  {name:10s} {seg['placement']['by_device']} {seg['placement']['by_precision']}{pinned}")
