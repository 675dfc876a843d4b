"""Every numeric option declares its range, at the command line and in the library function the
command calls: a count of 0 or -3 is one line, never an empty ``range``, a Python slice or a
"median of -3 runs"."""

import click
import pytest
from click.testing import CliRunner

from mesc.cli import cli
from mesc.errors import MescError


def _commands(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


def _numeric(param) -> bool:
    return isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))


def _declared(param) -> bool:
    kind = param.type
    return isinstance(kind, click.types._NumberRangeBase) and (kind.min is not None or kind.max is not None)


def test_every_numeric_option_of_every_command_declares_its_range():
    numeric, missing = 0, []
    for name, cmd in _commands(cli):
        for param in cmd.params:
            if _numeric(param):
                numeric += 1
                if not _declared(param):
                    missing.append(f"mesc {name} {param.opts[0]} ({param.type.name})")
    assert numeric > 30  # the walk reaches the options (bench, build, calibrate, export, train, ...)
    assert not missing, ("numeric options without a declared range (click.IntRange/FloatRange, and the same "
                         "check in the library function): " + ", ".join(missing))


@pytest.mark.parametrize("args, option", [
    (["selftest", "--runs", "0"], "--runs"),
    (["selftest", "--runs", "-3"], "--runs"),
    (["selftest", "--images", "0"], "--images"),
    (["bench", "PKG", "--batch", "0"], "--batch"),
    (["bench", "PKG", "--threads", "0"], "--threads"),
    (["eval", "PKG", "--data", "D", "--batch", "-3"], "--batch"),
    (["eval", "PKG", "--data", "D", "--limit", "0"], "--limit"),
    (["prepare", "PKG", "--max-images", "-1"], "--max-images"),
    (["build", "PKG", "--max-images", "-1"], "--max-images"),
    (["export", "-o", "OUT", "--max-images", "-1"], "--max-images"),
    (["export", "-o", "OUT", "--opset", "9"], "--opset"),
    (["export", "-o", "OUT", "--num-classes", "0"], "--num-classes"),
    (["synth-data", "-o", "OUT", "--seed", "-1"], "--seed"),
    (["train", "-m", "demo", "--data", "D", "-o", "O", "--workers", "-1"], "--workers"),
    (["calibrate", "PKG", "--data", "D", "--risk", "1.5"], "--risk"),
    (["run", "PKG", "IMG", "-o", "OUT", "--deadline", "-5"], "--deadline"),
    (["run", "PKG", "IMG", "-o", "OUT", "--every", "0"], "--every"),
    (["run", "PKG", "IMG", "-o", "OUT", "--max-frames", "-1"], "--max-frames"),
    (["run", "PKG", "IMG", "-o", "OUT", "--retries", "101"], "--retries"),
    (["run", "PKG", "IMG", "-o", "OUT", "--status-every", "0"], "--status-every"),
])
def test_an_out_of_range_count_is_one_line_at_the_cli(tmp_path, args, option):
    args = [str(tmp_path / a) if a in ("PKG", "D", "OUT", "O", "IMG") else a for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    # the library's own words, in one line, before anything is read
    assert res.output.startswith(f"mesc: error: {option} ") and len(res.output.splitlines()) == 1, res.output


@pytest.mark.parametrize("where, kw, named", [
    ("mesc.selftest:selftest", {"backend": "onnxruntime", "device": "cpu", "runs": -3},
     r"--runs must be a whole number >= 1, got -3"),
    ("mesc.selftest:selftest", {"backend": "onnxruntime", "device": "cpu", "runs": 0},
     r"--runs must be a whole number >= 1, got 0"),
    ("mesc.calibration.precision:prepare", {"max_images": -1}, r"--max-images must be a whole number >= 1, got -1"),
    ("mesc.engines.build:build", {"target": "host", "precision": "fp32", "max_images": -1},
     r"--max-images must be a whole number >= 1, got -1"),
    ("mesc.engines.build:build", {"target": "host", "precision": "fp32", "max_batch": 0},
     r"--max-batch must be a whole number >= 1 \(or None\), got 0"),
    ("mesc.evaluation.evaluate:evaluate_package", {"data": "D", "batch": 0},
     r"--batch must be a whole number >= 1, got 0"),
    ("mesc.evaluation.evaluate:evaluate_package", {"data": "D", "batch": -3},
     r"--batch must be a whole number >= 1, got -3"),
    ("mesc.datasets.synthetic:generate", {"count": 2, "seed": -1}, r"--seed must be a whole number from 0 to 4294967295, got -1"),
])
def test_the_library_function_checks_the_same_range_before_any_work(tmp_path, where, kw, named):
    import importlib

    module, name = where.split(":")
    function = getattr(importlib.import_module(module), name)
    kw = {k: str(tmp_path / v) if v == "D" else v for k, v in kw.items()}
    with pytest.raises(MescError, match=named):
        function(tmp_path / "never-read", **kw)


def test_calibration_images_are_never_a_negative_slice(tmp_path):
    from mesc.calibration.precision.images import load_calibration_batches

    with pytest.raises(MescError, match="--max-images must be a whole number >= 1"):
        load_calibration_batches(tmp_path, {"shape": [1, 3, 8, 8]}, max_images=-1)


def test_bench_checks_its_counts_in_the_library(tmp_path):
    from mesc.benchmarks.bench import BenchOptions, bench

    for kw, named in (({"threads": 0}, "--threads"), ({"batch": 0}, "--batch"), ({"iters": -3}, "--iters")):
        with pytest.raises(MescError, match=named):
            bench(tmp_path / "never-read", BenchOptions(**kw))
