"""``mesc run``: segment images with early exit."""

from __future__ import annotations

import click

from mesc.cli.options import Real, Whole, cuda_graphs_option, engine_build_options, parse_thresholds
from mesc.errors import MescError


@click.command("run")
@click.argument("package", type=click.Path())
@click.argument("images", metavar="INPUT...", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the label PNGs (images), results.csv and results.json (and overlays).")
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
@click.option("--overlay", is_flag=True,
              help="Also write overlays: per image <name>.overlay.png, for video overlay.mp4 (H.264 where PyAV can "
                   "encode it, else MPEG-4 Part 2), class colours over the input with a legend.")
@click.option("--max-frames", type=Whole(min=1), default=None, help="Video: stop after this many frames.")
@click.option("--every", type=Whole(min=1), default=1, show_default=True,
              help="Video: segment every K-th frame (the others are decoded and skipped).")
@click.option("--status-every", type=Real(min=0.1, max=3600), default=5.0, show_default=True,
              metavar="SECONDS", help="Video: with output not to a terminal, one status line per this many "
                                      "seconds (a terminal gets one line updated in place).")
@click.option("--retries", type=Whole(min=0, max=100), default=3, show_default=True,
              help="Live sources: how many times a dropped stream is reopened before the run stops.")
@click.option("--decode-thread/--no-decode-thread", default=True, show_default=True,
              help="Video: decode on a thread of its own, overlapping inference (off: decode, then infer).")
@click.option("--force", is_flag=True, help="Replace a previous run's output folder (a folder holding other files "
                                          "is refused).")
def run_cmd(package, images, output, backend, device, target, precision, cuda_graphs, exit_key, th_img, th_pix, batch,
            deadline, resize, overlay, max_frames, every, status_every, retries, decode_thread, force):
    """Segment INPUT with early exit: image files or folders (palette PNGs and a results table),
    or one video file (mp4, avi, mkv, ...) or live source (/dev/video0, rtsp://..., http://...),
    one results.csv row per frame.

    \b
    Images that cannot be read are reported and skipped; the exit status is then 1.
    Video needs the video extra (pip install 'mesc[video]'). Ctrl-C ends a video or live run
    cleanly, writing the results so far. A live source keeps only the newest frame while one is
    in flight (the frames dropped are counted).
    """
    from mesc.runtime import load
    from mesc.runtime.files import check_output, run_files
    from mesc.runtime.thresholds import per_exit
    from mesc.runtime.video import is_video

    video = [p for p in images if is_video(p)]
    if video and len(images) > 1:
        raise MescError(f"a video or live source runs alone: give {video[0]} as the only INPUT "
                        f"(got {len(images)} inputs)")
    if video:
        from mesc.runtime.video import require_av
        from mesc.runtime.video_run import check_video_output

        if deadline is not None or batch != 1:
            raise MescError("--deadline and --batch apply to images; video runs frame by frame")
        check_video_output(output, video[0], package, force)
        require_av()  # the missing extra, named before the package is loaded
    else:
        for opt, val, default in (("--max-frames", max_frames, None), ("--every", every, 1)):
            if val != default:
                raise MescError(f"{opt} applies to video input; {images[0]} is not a video")
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
        say = lambda m: click.echo(m, err=True)  # noqa: E731
        if video:
            from mesc.runtime.video_run import run_video

            summary = run_video(pipe, video[0], output, exit=exit_key, resize=resize, every=every,
                                max_frames=max_frames, overlay=overlay, threaded=decode_thread, force=force,
                                status_every=status_every, retries=retries, echo=say)
            click.echo(summary.format())
            click.echo(f"wrote {output}/results.csv and results.json")
            if summary.error:
                click.get_current_context().exit(1)
            return
        summary = run_files(pipe, images, output, exit=exit_key, resize=resize, batch=batch, force=force,
                            echo=say, deadline_ms=deadline, overlay=overlay)
    click.echo(summary.format())
    click.echo(f"wrote {output}/results.csv and results.json")
    if summary.failed:
        ctx = click.get_current_context()
        ctx.exit(1)
