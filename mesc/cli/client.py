"""``mesc client``: send images to a ``mesc serve`` model and print what comes back (smoke tests
of a deployment)."""

from __future__ import annotations

import click

from mesc.cli.options import Real


@click.command("client")
@click.argument("url")
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--model", required=True, help="The served model's name (mesc serve prints it).")
@click.option("--exit", "exit_key", default=None, help="Request parameter exit: budgeted mode at this exit.")
@click.option("--th-img", default=None, help="Request parameter th_img: one value or one per exit.")
@click.option("--th-pix", default=None, help="Request parameter th_pix: one value or one per exit.")
@click.option("--timeout", "timeout_s", type=Real(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for the model to be ready and to answer.")
def client_cmd(url, images, model, exit_key, th_img, th_pix, timeout_s):
    """Send IMAGES (PNG/JPEG files, as encoded bytes) to the model at URL (http://host:port or
    grpc://host:port) and print each one's exit and confidences. Without IMAGES, one grey image
    of the model's size is sent. The exit status is 1 when the server does not answer."""
    import time
    from pathlib import Path

    import numpy as np

    from mesc.serving.client import Client

    with Client(url, model, timeout_s=timeout_s) as client:
        deadline = time.monotonic() + timeout_s
        while not client.ready():
            if time.monotonic() > deadline:
                click.echo(f"mesc client: model '{model}' at {url} is not ready after {timeout_s:g} s", err=True)
                click.get_current_context().exit(1)
            time.sleep(0.5)
        kw = {"exit": exit_key, "th_img": th_img, "th_pix": th_pix}
        if images:
            names = [str(p) for p in images]
            results = client.infer(encoded=[Path(p).read_bytes() for p in images], **kw)
        else:
            names = ["(grey test image)"]
            results = client.infer(np.full((1, *client.input_shape()), 128, np.uint8), **kw)
    for name, r in zip(names, results):
        conf = ", ".join("-" if np.isnan(c) else f"{c:.3f}" for c in r.confidences)
        click.echo(f"{name}: exit {r.exit_name} ({r.exit}), confidences [{conf}], labels {r.labels.shape[0]}x"
                   f"{r.labels.shape[1]}, classes {sorted(np.unique(r.labels).tolist())[:8]}")
