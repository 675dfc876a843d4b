"""``serve``: a package as one model of NVIDIA Triton Inference Server, through PyTriton.

PyTriton (``pip install 'mesc[serve]'``) ships the Triton server binary and runs our Python
callable as the model, with Triton's HTTP/gRPC front ends, dynamic batcher, instances and
Prometheus metrics. Its wheels are for Linux x86-64 and aarch64 with glibc 2.35 or later (JetPack 6,
not JetPack 5); ``--model-repository`` (:mod:`mesc.serving.repository`) writes a model for a stock
``tritonserver`` instead, which needs no PyTriton.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np

from mesc.errors import MescError
from mesc.serving.requests import (CONFIDENCES, ENCODED, EXIT, EXIT_NAME, IMAGES, LABELS, MAX_ENCODED_BYTES)


@dataclasses.dataclass
class ServeOptions:
    backend: str = "auto"
    device: str = "cpu"
    target: str | None = None
    precision: str | None = None
    name: str | None = None  # the Triton model name; default: the package folder's name
    address: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 16  # images per executed batch, and per request
    max_queue_delay_us: int = 1000
    instances: int = 1  # model instances, each with its own pipeline
    max_encoded_bytes: int = MAX_ENCODED_BYTES
    exit_timeout_s: int = 5  # how long in-flight requests may finish at shutdown


def model_name(package, name: str | None = None) -> str:
    """A Triton model name (letters, digits, ``._-``) for the package."""
    name = name or Path(package).resolve().name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise MescError(f"model name {name!r}: Triton takes letters, digits, '.', '_' and '-' only; pass --name")
    return name


# the endpoints' option names, in the order they are checked
_PORTS = (("--http-port", "http_port"), ("--grpc-port", "grpc_port"), ("--metrics-port", "metrics_port"))


def _port_in_use(address: str, port: int) -> str | None:
    """Why ``port`` cannot be listened on at ``address`` (None when it can): bound here and
    closed at once. SO_REUSEADDR as servers set it, so a port left in TIME_WAIT by a previous
    server passes and only a live listener (any program, another ``mesc serve`` too) is refused."""
    host = address or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"the address {host!r} does not resolve ({err.strerror or err})"
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(where)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "already in use (another server, perhaps another mesc serve, listens there)"
            return err.strerror or str(err)
    return None


def check_options(opts: ServeOptions) -> None:
    """Refuse, in one line and before any package is loaded or Triton started, the options
    Triton would otherwise fail on minutes later: counts out of range, one port given to two
    endpoints, a port something already listens on."""
    for option, value, low in (("--instances", opts.instances, 1), ("--max-batch", opts.max_batch, 1),
                               ("--max-queue-delay-us", opts.max_queue_delay_us, 0),
                               ("max_encoded_bytes (--max-request-mb)", opts.max_encoded_bytes, 1),
                               ("exit_timeout_s", opts.exit_timeout_s, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise MescError(f"{option} must be a whole number >= {low}, got {value!r}")
    seen: dict = {}
    for option, field in _PORTS:
        port = getattr(opts, field)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise MescError(f"{option} must be a port number from 1 to 65535, got {port!r}")
        if port in seen:
            raise MescError(f"{option} {port} is also the {seen[port]}; give each endpoint its own port")
        seen[port] = option
    for option, field in _PORTS:
        port = getattr(opts, field)
        why = _port_in_use(opts.address, port)
        if why:
            raise MescError(f"{option} {port} on {opts.address or '0.0.0.0'}: {why}; pass a free port")


def check_platform() -> None:
    # nvidia-pytriton 0.7 publishes manylinux wheels for x86-64 and aarch64 (glibc 2.35: JetPack 6
    # yes, JetPack 5 no); where pip found none, require() below names the missing package
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"):
        raise MescError(f"mesc serve runs on Linux x86-64 or aarch64 only (PyTriton ships no other wheels); "
                        f"this is {sys.platform} {platform.machine()}. Write a Triton model repository with "
                        f"--model-repository instead, or run the package with mesc run or mesc.load")


def describe(name: str, pkg, pipe, opts: ServeOptions) -> list[str]:
    """The startup lines: what is served where."""
    h, w = pipe.chw[1:]
    host = "127.0.0.1" if opts.address in ("0.0.0.0", "") else opts.address
    batching = ("dynamic batch: images that exit leave the batch" if pipe.dynamic_batch else
                f"static batch of {pipe.static_batch}: served {pipe.static_batch} image(s) at a time without "
                f"compaction (export with --dynamic-batch to batch freely)")
    return [
        f"mesc serve: model '{name}' from {pkg} ({pipe.runner.backend} on {pipe.runner.device}; exits "
        f"{', '.join(pipe.exit_names)}; {batching})",
        f"  HTTP     http://{host}:{opts.http_port}/v2/models/{name}/infer",
        f"  gRPC     grpc://{host}:{opts.grpc_port}  (model '{name}')",
        f"  metrics  http://{host}:{opts.metrics_port}/metrics",
        f"  inputs   {IMAGES}: uint8 N x {h} x {w} x {pipe.chw[0]}, or {ENCODED}: BYTES N x 1 (PNG/JPEG); "
        f"parameters exit, th_img, th_pix",
        f"  outputs  {LABELS} int32, {EXIT} int32, {EXIT_NAME} bytes, {CONFIDENCES} float32 N x {len(pipe.exit_names)}",
        f"  up to {opts.max_batch} images per batch and per request, queue delay {opts.max_queue_delay_us} us, "
        f"{opts.instances} instance(s); Ctrl-C or SIGTERM stops",
    ]


def serve(package, options: ServeOptions | None = None, echo=print) -> None:
    """Serve ``package`` until Ctrl-C or SIGTERM (raised as KeyboardInterrupt: see
    :func:`mesc.package.signals.sigterm_as_interrupt`), then stop Triton and its processes. The
    options and ports are checked first (:func:`check_options`), then every instance's pipeline is
    loaded before a port opens, so a bad package or device fails before Triton starts."""
    from mesc.lazy import require
    from mesc.runtime import load
    from mesc.serving.libpython import preload_env

    opts = options or ServeOptions()
    check_options(opts)
    check_platform()
    name = model_name(package, opts.name)
    env = preload_env()  # fails here, with the reason, where no shared libpython exists
    require("pytriton", extra="serve", purpose="mesc serve")
    pipes = []
    try:
        for _ in range(opts.instances):
            pipes.append(load(package, backend=opts.backend, device=opts.device, target=opts.target,
                              precision=opts.precision))
        _serve(name, package, pipes, opts, env, echo)
    finally:
        for pipe in pipes:
            pipe.close()


def _serve(name, package, pipes, opts, env, echo):
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from mesc.serving.model import ServedPipeline

    pipe = pipes[0]
    c, h, w = pipe.chw
    config = TritonConfig(http_address=opts.address, http_port=opts.http_port, grpc_address=opts.address,
                          grpc_port=opts.grpc_port, metrics_address=opts.address, metrics_port=opts.metrics_port,
                          exit_timeout_secs=opts.exit_timeout_s)
    triton = Triton(config=config)
    try:
        triton.bind(
            model_name=name,
            infer_func=[ServedPipeline(p, opts.max_encoded_bytes) for p in pipes],
            inputs=[Tensor(name=IMAGES, dtype=np.uint8, shape=(h, w, c), optional=True),
                    Tensor(name=ENCODED, dtype=bytes, shape=(1,), optional=True)],
            outputs=[Tensor(name=LABELS, dtype=np.int32, shape=(-1, -1)),
                     Tensor(name=EXIT, dtype=np.int32, shape=(1,)),
                     Tensor(name=EXIT_NAME, dtype=bytes, shape=(1,)),
                     Tensor(name=CONFIDENCES, dtype=np.float32, shape=(len(pipe.exit_names),))],
            config=ModelConfig(max_batch_size=opts.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=opts.max_queue_delay_us)),
            strict=True)
        _run(triton, env)
        for line in describe(name, package, pipe, opts):
            echo(line)
        while triton.is_alive():
            time.sleep(0.5)
        raise MescError("the Triton server stopped unexpectedly (see its log above)")
    except KeyboardInterrupt:
        echo("mesc serve: stopping")
    finally:
        triton.stop()


def _run(triton, env):
    """Start the server with ``env`` (the libpython preload) in force for its process only:
    PyTriton copies ``os.environ`` when it starts the server."""
    saved = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = env["LD_PRELOAD"]
    try:
        triton.run()
    finally:
        if saved is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = saved
