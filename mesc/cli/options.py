"""Option parsers shared by the commands (click callbacks: ctx, param, value -> parsed value)."""

from __future__ import annotations

import click


class RangeError(click.BadParameter):
    """An option value out of its declared range, in the library's own words (the message
    already names the option)."""

    def format_message(self) -> str:
        return self.message


def _option_name(param) -> str:
    return max(param.opts, key=len) if param is not None and param.opts else "value"


def _library_check(where: str, value, param, ctx) -> None:
    """Run the library's own check of the value, ``"module:function"`` (imported only when the
    option is given, so ``mesc --help`` stays light), where its message says more."""
    import importlib

    from mesc.errors import MescError

    module, name = where.split(":")
    try:
        getattr(importlib.import_module(module), name)(value)
    except MescError as err:
        raise RangeError(str(err), ctx=ctx, param=param) from None


class Whole(click.IntRange):
    """A whole number in its range: click's IntRange (so ``--help`` shows the range), refused in
    the words the library function uses for the same value (:func:`mesc.ranges.check_int`, or
    ``check``, the library's own check as ``"module:function"``)."""

    def __init__(self, min=None, max=None, check: str | None = None):  # noqa: A002  (click's names)
        super().__init__(min, max)
        self.check = check

    def convert(self, value, param, ctx):
        from mesc.errors import MescError
        from mesc.ranges import check_int

        number = click.INT.convert(value, param, ctx)  # not a number: click's own message
        if self.check is not None:  # the library's check is the authority on its range
            _library_check(self.check, number, param, ctx)
            return number
        try:
            return check_int(_option_name(param), number, self.min, self.max)
        except MescError as err:
            raise RangeError(str(err), ctx=ctx, param=param) from None


class Real(click.FloatRange):
    """A finite number in its range (a plain FloatRange lets nan and inf through), refused in
    the library's words (:func:`mesc.ranges.check_real`, or ``check`` as for :class:`Whole`)."""

    def __init__(self, min=None, max=None, min_open: bool = False, max_open: bool = False,  # noqa: A002
                 check: str | None = None):
        super().__init__(min, max, min_open, max_open)
        self.check = check

    def convert(self, value, param, ctx):
        from mesc.errors import MescError
        from mesc.ranges import check_real

        number = click.FLOAT.convert(value, param, ctx)
        if self.check is not None:
            _library_check(self.check, number, param, ctx)
            return number
        try:
            return check_real(_option_name(param), number, self.min, self.max, self.min_open, self.max_open)
        except MescError as err:
            raise RangeError(str(err), ctx=ctx, param=param) from None


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
