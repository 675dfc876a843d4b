"""Option parsers shared by the commands (click callbacks: ctx, param, value -> parsed value)."""

from __future__ import annotations

import click

# the numeric option types live with the range checks they share with the library (the
# training command, outside mesc.cli, declares its options with them too)
from mesc.ranges import Real, RangeError, Whole  # noqa: F401  (re-exported for the commands)


def parse_shape(ctx, param, value):
    if value is None:
        return None
    try:
        dims = [int(d) for d in value.lower().replace(",", "x").split("x")]
    except ValueError:
        raise click.BadParameter(f"expected NxCxHxW (e.g. 1x3x512x1024), got {value!r}")
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise click.BadParameter(f"expected four positive dims NxCxHxW (e.g. 1x3x512x1024), got {value!r}")
    return tuple(dims)


def parse_int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated exit indices (e.g. 0,2,3), got {value!r}")


def parse_thresholds(ctx, param, value):
    """One value for every exit, or one per exit (comma-separated, in exit order)."""
    if value is None:
        return None
    from mesc.runtime.thresholds import parse_threshold_list

    try:
        return parse_threshold_list(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def parse_policy_name(ctx, param, value):
    """An exit policy kind (mesc.policy.POLICY_KINDS), with '-' accepted for '_'."""
    from mesc.policy import POLICY_KINDS

    name = value.replace("-", "_")
    if name not in POLICY_KINDS:
        raise click.BadParameter(f"expected one of {', '.join(POLICY_KINDS)}, got {value!r}")
    return name


def parse_name_list(ctx, param, value):
    """Comma-separated names, blanks dropped."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def engine_build_options(command):
    """--target and --precision: which TensorRT engines, or which prepared ONNX graphs on
    onnxruntime, a command that runs a package uses."""
    command = click.option("--precision", default=None,
                           help="TensorRT engines: which precision build, e.g. int8 or fp16-dla0; onnxruntime: "
                                "fp16 or int8 runs the graphs 'mesc prepare' wrote.")(command)
    return click.option("--target", default=None,
                        help="TensorRT engines: which target's build (default: the one for this GPU).")(command)


def backend_options(command):
    """--backend and --device for a command that runs every exit over a labelled set
    (ONNX Runtime on the CPU unless told otherwise)."""
    command = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")(command)
    return click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt", "auto"]), default="onnxruntime",
                        show_default=True, help="Which runtime backend runs the exits.")(command)


def cuda_graphs_option(command):
    """--cuda-graphs on|off for a command that runs a package on a device."""
    return click.option("--cuda-graphs", "cuda_graphs", type=click.Choice(["on", "off"]), default="on",
                        show_default=True, callback=lambda ctx, param, v: v == "on",
                        help="On a CUDA device, capture each segment per batch size into a CUDA graph and "
                             "replay it; off runs every segment uncaptured (for comparison, or a driver "
                             "where capture fails).")(command)


def policy_pooling_option(auto: str):
    """--policy-pooling auto|shift|pool: how the MESS policy graph computes its windows
    (mesc.exporters.policy.pooling); ``auto`` says what "auto" means for the command."""
    return click.option("--policy-pooling", type=click.Choice(["auto", "shift", "pool"]), default="auto",
                        show_default=True,
                        help="How the policy graph computes its windows: 'shift' (Slice+Add, fastest on CPU), 'pool' "
                             "(MaxPool/AveragePool, a quarter of the nodes: fewer kernel launches on a GPU; identical "
                             f"results up to output stride 50), or 'auto': {auto}.")
