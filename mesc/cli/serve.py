"""``mesc serve``: a package behind NVIDIA Triton Inference Server (PyTriton)."""

from __future__ import annotations

import click

from mesc.cli.options import Real, Whole, engine_build_options


@click.command("serve")
@click.argument("package", type=click.Path())
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@engine_build_options
@click.option("--name", default=None, help="Triton model name (default: the package folder's name).")
@click.option("--address", default="0.0.0.0", show_default=True, help="Address the endpoints listen on.")
@click.option("--http-port", type=Whole(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=Whole(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=Whole(1, 65535), default=8002, show_default=True)
@click.option("--max-batch", type=Whole(min=1), default=16, show_default=True,
              help="Most images Triton batches into one run, and most images one request may hold.")
@click.option("--max-queue-delay-us", type=Whole(min=0), default=1000, show_default=True,
              help="How long the dynamic batcher may hold a request to fill a batch.")
@click.option("--instances", type=Whole(min=1), default=1, show_default=True,
              help="Model instances, each with its own pipeline (several per GPU overlap their work).")
@click.option("--max-request-mb", type=Real(min=0, min_open=True), default=16.0, show_default=True,
              help="Largest encoded image (PNG/JPEG bytes) accepted, in MiB.")
def serve_cmd(package, backend, device, target, precision, name, address, http_port, grpc_port, metrics_port,
              max_batch, max_queue_delay_us, instances, max_request_mb):
    """Serve PACKAGE as one Triton model over HTTP and gRPC until Ctrl-C or SIGTERM.

    \b
    Inputs: 'images' uint8 N x H x W x 3, or 'encoded' BYTES N x 1 (PNG/JPEG files).
    Outputs: 'labels' int32, 'exit' int32, 'exit_name', 'confidences' float32 N x exits.
    Request parameters: exit (budgeted), th_img, th_pix (one value or one per exit).
    Needs pip install 'mesc[serve]' (Linux x86-64); check a server with mesc client URL.
    """
    from mesc.serving.server import ServeOptions, serve

    opts = ServeOptions(backend=backend, device=device, target=target, precision=precision, name=name,
                        address=address, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                        max_batch=max_batch, max_queue_delay_us=max_queue_delay_us, instances=instances,
                        max_encoded_bytes=int(max_request_mb * 2**20))
    serve(package, opts, echo=lambda m: click.echo(m, err=True))
