"""``mesc bench``: latency per segment and per exit."""

from __future__ import annotations

import click

from mesc.cli.options import Whole, cuda_graphs_option, engine_build_options, parse_name_list
from mesc.runtime.backends.onnxrt.loader import SPIN_MODES


@click.command("bench")
@click.argument("package", type=click.Path())
@click.option("--backend", default="onnxruntime", show_default=True, help="onnxruntime or tensorrt.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@engine_build_options
@cuda_graphs_option
@click.option("--batch", type=Whole(min=1), default=1, show_default=True, help="Images per run.")
@click.option("--warmup", type=Whole(min=0), default=3, show_default=True, help="Untimed rounds first.")
@click.option("--iters", type=Whole(min=1), default=20, show_default=True, help="Timed rounds.")
@click.option("--threads", type=Whole(min=1), default=None, help="CPU threads per session (default: all cores).")
@click.option("--spin", type=click.Choice(SPIN_MODES), default="run", show_default=True,
              help="onnxruntime on CPU: threads spin while a segment runs (run), never (off), or also after it (on).")
@click.option("--data", type=click.Path(), default=None,
              help="Image folder: input-dependent end to end against final-only, image by image.")
@click.option("--resize", is_flag=True, help="With --data: resize images of another size (else skipped).")
@click.option("--baseline", "baselines", callback=parse_name_list, default="monolithic,eager", show_default=True,
              help="Comma-separated baselines: monolithic, eager, or none.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write every figure here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of latency per exit against FLOPs, with the baselines (needs mesc[plot]).")
@click.option("--record", is_flag=True,
              help="Store the per-segment medians in the manifest (what 'mesc calibrate' costs exits with).")
@click.option("--force", is_flag=True, help="Overwrite existing --json and --plot files.")
def bench_cmd(package, backend, device, target, precision, cuda_graphs, batch, warmup, iters, threads, spin, data, resize,
              baselines, json_out, plot, record, force):
    """Latency per segment and per exit of PACKAGE, against a monolithic graph and eager PyTorch."""
    from mesc.benchmarks.bench import BenchOptions, bench, check_outputs, format_result, plot as plot_result, \
        record_latency, write_json

    check_outputs(package, data, json_out, plot, force)  # before minutes of timing
    chosen = tuple(b for b in baselines if b != "none")
    opts = BenchOptions(backend=backend, device=device, target=target, precision=precision, batch=batch,
                        warmup=warmup, iters=iters, data=data, resize=resize, baselines=chosen, threads=threads,
                        cuda_graphs=cuda_graphs, spin=spin)
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
