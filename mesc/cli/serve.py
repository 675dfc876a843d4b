"""``mesc serve``: a package behind NVIDIA Triton Inference Server, through PyTriton here and now,
or written as a model of a Triton model repository (``--model-repository``) for a stock
``tritonserver``. One command for both: the served model (inputs, outputs, request parameters,
batching, instances, runtime backend and device) is the same and takes the same options; only who
runs the server differs."""

from __future__ import annotations

import click

from mesc.cli.options import Real, Whole, engine_build_options

# options that configure a server mesc starts itself; tritonserver takes its own
_SERVER_ONLY = ("address", "http_port", "grpc_port", "metrics_port")


@click.command("serve")
@click.argument("package", type=click.Path())
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or cuda:N (in a model repository: CPU or GPU instances; cuda: on every GPU).")
@engine_build_options
@click.option("--name", default=None, help="Triton model name (default: the package folder's name).")
@click.option("--address", default="0.0.0.0", show_default=True, help="Address the endpoints listen on.")
@click.option("--http-port", type=Whole(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=Whole(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=Whole(1, 65535), default=8002, show_default=True)
@click.option("--max-batch", type=Whole(min=1), default=None,
              help="Most images Triton batches into one run, and most images one request may hold "
                   "[default: 16; in a model repository, the TensorRT engines' largest batch where smaller].")
@click.option("--max-queue-delay-us", type=Whole(min=0), default=1000, show_default=True,
              help="How long the dynamic batcher may hold a request to fill a batch.")
@click.option("--instances", type=Whole(min=1), default=1, show_default=True,
              help="Model instances, each with its own pipeline (several per GPU overlap their work).")
@click.option("--max-request-mb", type=Real(min=0, min_open=True), default=16.0, show_default=True,
              help="Largest encoded image (PNG/JPEG bytes) accepted, in MiB.")
@click.option("--model-repository", "repository", type=click.Path(), default=None,
              help="Write the model into this Triton model repository (DIR/NAME/) for tritonserver, "
                   "instead of serving it here.")
@click.option("--force", is_flag=True, help="With --model-repository: replace a model folder mesc wrote there.")
@click.pass_context
def serve_cmd(ctx, package, backend, device, target, precision, name, address, http_port, grpc_port, metrics_port,
              max_batch, max_queue_delay_us, instances, max_request_mb, repository, force):
    """Serve PACKAGE as one Triton model over HTTP and gRPC until Ctrl-C or SIGTERM, or with
    --model-repository DIR write it as a model that a stock tritonserver loads.

    \b
    Inputs: 'images' uint8 N x H x W x 3, or 'encoded' BYTES N x 1 (PNG/JPEG files).
    Outputs: 'labels' int32, 'exit' int32, 'exit_name', 'confidences' float32 N x exits.
    Request parameters: exit (budgeted), th_img, th_pix (one value or one per exit).
    Serving here needs pip install 'mesc[serve]' (Linux x86-64 or aarch64 with glibc 2.35+);
    check a server with mesc client URL. Writing a repository needs neither.
    """
    from click.core import ParameterSource

    from mesc.errors import MescError

    max_encoded_bytes = int(max_request_mb * 2**20)
    if repository is not None:
        from mesc.serving.repository import RepositoryOptions, write_repository

        given = [f"--{p.replace('_', '-')}" for p in _SERVER_ONLY
                 if ctx.get_parameter_source(p) is ParameterSource.COMMANDLINE]
        if given:
            raise MescError(f"{', '.join(given)}: tritonserver sets its own address and ports "
                            f"(--http-port, --grpc-port, --metrics-port of tritonserver); drop them with --model-repository")
        opts = RepositoryOptions(name=name, backend=backend, device=device, target=target, precision=precision,
                                 max_batch=max_batch, max_queue_delay_us=max_queue_delay_us, instances=instances,
                                 max_encoded_bytes=max_encoded_bytes, force=force)
        write_repository(package, repository, opts, echo=lambda m: click.echo(m, err=True))
        return
    if force:
        raise MescError("--force goes with --model-repository (serving here writes nothing)")
    from mesc.serving.server import ServeOptions, serve

    opts = ServeOptions(backend=backend, device=device, target=target, precision=precision, name=name,
                        address=address, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                        max_batch=max_batch or 16, max_queue_delay_us=max_queue_delay_us, instances=instances,
                        max_encoded_bytes=max_encoded_bytes)
    serve(package, opts, echo=lambda m: click.echo(m, err=True))
