"""The `mesc` command's handling of what is not a result: interruptions (SIGINT, SIGTERM), the
user's environment errors, Python warnings. One line each on stderr, never a traceback; bugs
keep their traceback."""

import errno
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
from click.testing import CliRunner

from mesc.cli import cli
from mesc.cli.reporting import os_error_message


def _wait_for_staging(parent, name, proc, timeout=60):
    """Until a staging directory of ``name`` holds a written image."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read()
        for d in parent.glob(f".{name}.tmp-*"):
            if any((d / "images").glob("*.png")):
                return
        time.sleep(0.05)
    raise AssertionError("synth-data wrote nothing")


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_synth_data_cleans_up_and_keeps_the_old_folder(tmp_path, sig, status):
    from mesc.datasets.synthetic import generate

    out = generate(tmp_path / "data", count=1, size=(32, 64))  # --force replaces only a synth-data folder
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    proc = subprocess.Popen([sys.executable, "-m", "mesc.cli", "synth-data", "-o", str(out), "--count", "100000",
                             "--size", "32x64", "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_staging(tmp_path, "data", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert err.splitlines()[-1] == "mesc: interrupted" and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no .data.tmp-* left
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def _failing_synth_data(monkeypatch, err):
    from mesc.datasets import synthetic

    def generate(*args, **kw):
        raise err

    monkeypatch.setattr(synthetic, "generate", generate)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_the_users_environment_errors_are_one_line(monkeypatch, tmp_path, code):
    target = tmp_path / "out" / "images"
    _failing_synth_data(monkeypatch, OSError(code, os.strerror(code), str(target)))
    res = CliRunner().invoke(cli, ["synth-data", "-o", str(tmp_path / "elsewhere")])
    assert res.exit_code == 2
    assert res.output == f"mesc: error: {target}: {os.strerror(code)}\n"


def test_a_missing_path_the_user_named_is_one_line(monkeypatch, tmp_path):
    given = tmp_path / "out"
    _failing_synth_data(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory",
                                                       str(given / "images" / "0.png")))
    res = CliRunner().invoke(cli, ["synth-data", f"--output={given}"])
    assert res.exit_code == 2 and res.output == f"mesc: error: {given}/images/0.png: No such file or directory\n"


@pytest.mark.parametrize("err", [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/somewhere/mesc/made/up.json"),
    TypeError("a bug"),
    KeyError("a bug"),
])
def test_bugs_keep_their_traceback(monkeypatch, tmp_path, err):
    _failing_synth_data(monkeypatch, err)
    res = CliRunner().invoke(cli, ["synth-data", "-o", str(tmp_path / "out")])
    assert res.exception is err and "mesc: error" not in res.output


def test_an_environment_error_without_a_path_says_why():
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device"), []) == "No space left on device"
    assert os_error_message(OSError(errno.EBADF, "Bad file descriptor", "x"), ["x"]) is None


def test_warnings_are_one_line_without_their_source(monkeypatch, tmp_path):
    from mesc.datasets import synthetic

    def generate(out, *args, **kw):
        warnings.warn("this is\nworth knowing", UserWarning)
        return out

    monkeypatch.setattr(synthetic, "generate", generate)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, ["synth-data", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert res.stderr == "mesc: warning: this is worth knowing\n"


@pytest.fixture(scope="module")
def three_scenes(tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("scenes") / "data", 3, size=(32, 64))


@pytest.mark.parametrize("command,message", [
    ("export -m toys.py:skipnet -o {existing}", "already exists"),
    ("synth-data -o {existing}", "already exists"),
    ("calibrate {pkg} --data {data} --max-cost 0", "--max-cost must be a positive number"),
    ("calibrate {pkg} --data {data} --max-drop 1", "needs at least 5 labelled images"),
    ("bench {pkg} --json {existing}/keep.txt/bench.json", "is not a directory"),
    ("run {pkg} {data} -o {existing}", "not empty"),
])
def test_refusals_are_one_line_before_any_progress(toy_package, three_scenes, tmp_path, capfd, command, message):
    from mesc.cli import main

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("keep")
    args = command.format(existing=existing, pkg=toy_package, data=three_scenes).split()
    with pytest.raises(SystemExit) as stop:
        main(args)
    out, err = capfd.readouterr()
    assert stop.value.code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("mesc: error: ") and message in err, err
