"""The ``mesc`` command line: a thin layer over the library functions.

Each command lives in its own module, parses options, calls the function a library user would
call, and prints. ``mesc train`` is the one defined elsewhere (:mod:`mesc.training.command`): the
torchrun entry runs the same command and stands below the CLI. Heavy modules are imported inside the commands so ``mesc --help`` stays light.
"""

from __future__ import annotations

import sys

import click

from mesc import __version__
from mesc.cli.bench import bench_cmd
from mesc.cli.build import build_cmd
from mesc.cli.calibrate import calibrate_cmd
from mesc.cli.client import client_cmd
from mesc.cli.data import data_cmd
from mesc.cli.eval import eval_cmd
from mesc.cli.export import export_cmd
from mesc.cli.inspect import inspect_cmd
from mesc.cli.prepare import prepare_cmd
from mesc.cli.reporting import arg_values, interrupt_status, os_error_message, warnings_as_lines
from mesc.cli.run import run_cmd
from mesc.cli.selftest import selftest_cmd
from mesc.cli.serve import serve_cmd
from mesc.cli.synth_data import synth_data_cmd
from mesc.errors import MescError
from mesc.package.signals import sigterm_as_interrupt
from mesc.ranges import RangeError
from mesc.training.command import train_cmd


class _Group(click.Group):
    """Runs a command so that its user errors (and the user's environment errors) end in one
    line and exit status 2, an interruption (Ctrl-C or SIGTERM, which unwinds the same way so
    staging directories are removed) in "mesc: interrupted" and 130 or 143, and its warnings
    show as one line each."""

    def parse_args(self, ctx, args):
        ctx.meta["mesc.args"] = arg_values(args)  # which paths the user named, for OSError messages
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        with sigterm_as_interrupt(), warnings_as_lines():
            try:
                return super().invoke(ctx)
            except MescError as err:
                click.echo(f"mesc: error: {err}", err=True)
                ctx.exit(2)
            except RangeError as err:  # a value out of its declared range: the library's own words
                click.echo(f"mesc: error: {err.format_message()}", err=True)
                ctx.exit(2)
            except click.UsageError as err:  # not a number, not a choice, a missing option: one line too
                where = err.ctx.command_path if err.ctx is not None else "mesc"
                click.echo(f"mesc: error: {err.format_message()} (see '{where} -h')", err=True)
                ctx.exit(2)
            except KeyboardInterrupt as err:
                click.echo("mesc: interrupted", err=True)
                ctx.exit(interrupt_status(err))
            except OSError as err:
                message = os_error_message(err, ctx.meta.get("mesc.args", ()))
                if message is None:
                    raise
                click.echo(f"mesc: error: {message}", err=True)
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
      mesc eval pkg --data d        mIoU per exit and class at the labels' resolution
      mesc selftest                 check this device against ONNX Runtime CPU
      mesc serve pkg                serve it behind Triton (HTTP/gRPC)
    """


for _command in (export_cmd, inspect_cmd, synth_data_cmd, train_cmd, prepare_cmd, build_cmd, run_cmd,
                 calibrate_cmd, eval_cmd, bench_cmd, selftest_cmd, serve_cmd, client_cmd, data_cmd):
    cli.add_command(_command)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="mesc", standalone_mode=True)
    except MescError as err:  # errors raised while parsing, outside a command
        click.echo(f"mesc: error: {err}", err=True)
        sys.exit(2)
