"""mesc.package.outputs: one test per rule of where a command may write."""

import json
import os

import pytest

from mesc.datasets import synthetic
from mesc.package import outputs
from mesc.errors import MescError
from mesc.package.outputs import check_dir_output, check_file_output, refuse_overlap
from mesc.package.staging import atomic_file

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture()
def user_dir(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "a.txt").write_bytes(b"precious a")
    (d / "b.jpg").write_bytes(b"precious b")
    return d


def _unchanged(d):
    return (d / "a.txt").read_bytes() == b"precious a" and (d / "b.jpg").read_bytes() == b"precious b"


# -- outputs never overlap inputs ----------------------------------------------------------------

@pytest.mark.parametrize("out,how", [("mine", "is"), (".", "contains"), ("mine/sub", "lies inside"),
                                     ("mine/a.txt", "lies inside")])
def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused(user_dir, monkeypatch, out, how):
    monkeypatch.chdir(user_dir.parent)
    with pytest.raises(MescError, match=rf"output -o {out} {how} the input IMAGES mine"):
        refuse_overlap([("-o", out)], [("IMAGES", "mine")])


def test_overlap_sees_through_dots_and_symlinks(user_dir, tmp_path, monkeypatch):
    (tmp_path / "link").symlink_to(user_dir)
    monkeypatch.chdir(user_dir)
    for out in ("../link/x", "./../mine/./x", tmp_path / "link"):
        with pytest.raises(MescError, match="the input --data"):
            refuse_overlap([("-o", out)], [("--weights", tmp_path / "w.pt"), ("--data", user_dir)])
    with pytest.raises(MescError, match="-o ../link/a.txt is the input --weights"):
        refuse_overlap([("-o", "../link/a.txt")], [("--weights", user_dir / "a.txt")])


def test_neighbours_and_missing_inputs_do_not_overlap(tmp_path):
    refuse_overlap([("-o", tmp_path / "mine2")], [("--data", tmp_path / "mine"), ("--val", None)])
    refuse_overlap([("-o", None)], [("--data", tmp_path)])


# -- --force replaces only what mesc wrote ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["package", "synth-data", "run"])
def test_force_refuses_a_folder_of_other_files_for_every_kind(user_dir, kind):
    with pytest.raises(MescError, match="--force replaces only"):
        check_dir_output(user_dir, kind, force=True)
    assert _unchanged(user_dir)


def test_the_refusal_names_what_mesc_did_not_write(user_dir):
    for i in range(6):
        (user_dir / f"f{i}.txt").write_text("x")
    with pytest.raises(MescError, match=r"holds 8 file\(s\) mesc did not write: a.txt, b.jpg, f0.txt, f1.txt, "
                                        r"f2.txt, \.\.\. \(3 more\)"):
        check_dir_output(user_dir, "run", force=True)


def test_existing_outputs_need_force(user_dir):
    for kind in ("package", "synth-data"):
        with pytest.raises(MescError, match="already exists; pass --force"):
            check_dir_output(user_dir, kind)
    with pytest.raises(MescError, match="not empty; pass --force"):
        check_dir_output(user_dir, "run")


def test_a_package_and_a_synth_data_folder_are_recognised(toy_package, tmp_path):
    assert check_dir_output(toy_package, "package", force=True) == toy_package
    synth = synthetic.generate(tmp_path / "synth", 1, size=(16, 16))
    check_dir_output(synth, "synth-data", force=True)
    with pytest.raises(MescError, match="not a folder written by 'mesc synth-data'"):
        check_dir_output(toy_package, "synth-data", force=True)
    with pytest.raises(MescError, match="not a mesc package"):
        check_dir_output(synth, "package", force=True)


def test_force_refuses_a_valid_package_or_synth_data_folder_holding_the_users_files(toy_package, tmp_path):
    """One rule for every kind: --force replaces a folder only when mesc wrote every file in it."""
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(toy_package, pkg)
    check_dir_output(pkg, "package", force=True)  # only mesc's files: replaceable
    for rel in ("notes.txt", "onnx/mine.onnx", "reports/cal.json"):
        target = pkg / rel
        target.parent.mkdir(exist_ok=True)
        target.write_text("the user's")
        with pytest.raises(MescError, match=rf"--force replaces only a mesc package, and it holds 1 file\(s\) mesc did "
                                            rf"not write: {rel}"):
            check_dir_output(pkg, "package", force=True)
        target.unlink()
    synth = synthetic.generate(tmp_path / "synth", 2, size=(16, 16))
    (synth / "masks" / "00001.txt").write_text("my annotation notes")
    (synth / "report.json").write_text("{}")
    with pytest.raises(MescError, match=r"holds 2 file\(s\) mesc did not write: masks/00001.txt, report.json"):
        check_dir_output(synth, "synth-data", force=True)


def test_export_and_synth_data_force_keep_the_users_files(toy_package, tmp_path):
    """The commands, end to end: the refusal comes before any work and nothing is lost."""
    from click.testing import CliRunner

    from mesc.cli import cli

    synth = synthetic.generate(tmp_path / "synth", 1, size=(16, 16))
    (synth / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["synth-data", "-o", str(synth), "--count", "1", "--size", "16x16", "--force"])
    assert res.exit_code == 2 and "notes.txt" in res.output, res.output
    assert (synth / "notes.txt").read_text() == "keep me"
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(toy_package, pkg)
    (pkg / "calibration-report.json").write_text("{}")
    res = CliRunner().invoke(cli, ["export", "-o", str(pkg), "--force"])
    assert res.exit_code == 2 and "calibration-report.json" in res.output, res.output
    assert (pkg / "calibration-report.json").exists()


def test_a_run_output_is_an_empty_folder_or_exactly_what_a_previous_run_listed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    check_dir_output(out, "run")  # empty: no --force needed
    (out / "x.png").write_bytes(b"label map")
    (out / "results.csv").write_text("")
    results = {**outputs.RUN_MARKER, "images": [{"output": "x.png"}]}
    (out / "results.json").write_text(json.dumps(results))
    check_dir_output(out, "run", force=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MescError, match="holds 1 file.* notes.txt"):
        check_dir_output(out, "run", force=True)
    (out / "notes.txt").unlink()
    (out / "results.json").write_text(json.dumps({"images": [{"output": "x.png"}]}))  # no marker
    with pytest.raises(MescError, match="x.png"):
        check_dir_output(out, "run", force=True)


def test_a_file_is_not_a_directory_output(user_dir):
    with pytest.raises(MescError, match="exists and is not a directory"):
        check_dir_output(user_dir / "a.txt", "run", force=True)


# -- never the current directory ---------------------------------------------------------------

@pytest.mark.parametrize("out", [".", "..", "{cwd}"])
def test_the_current_directory_or_one_above_is_never_an_output(tmp_path, monkeypatch, out):
    cwd = tmp_path / "here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for kind in outputs.KINDS:
        with pytest.raises(MescError, match="current directory or a folder above it"):
            check_dir_output(out.format(cwd=cwd), kind, force=True)
    assert cwd.is_dir()


# -- files: existing, unwritable, atomic -------------------------------------------------------

def test_an_existing_file_needs_force(user_dir):
    with pytest.raises(MescError, match=r"--report .*a.txt already exists; pass --force"):
        check_file_output(user_dir / "a.txt", "--report")
    check_file_output(user_dir / "a.txt", "--report", force=True)
    with pytest.raises(MescError, match="is a directory"):
        check_file_output(user_dir, "--report", force=True)
    assert _unchanged(user_dir)


def test_a_place_under_a_file_or_in_proc_is_refused_up_front(user_dir):
    # these hold as root too, where chmod does not stop writes
    with pytest.raises(MescError, match="a.txt is not a directory"):
        check_file_output(user_dir / "a.txt" / "out.json", "--json")
    with pytest.raises(MescError, match="a.txt is not a directory"):
        check_dir_output(user_dir / "a.txt" / "out", "run")
    if os.path.isdir("/proc/self"):
        with pytest.raises(MescError, match="cannot write in /proc"):
            check_file_output("/proc/self/mesc-out.json", "--json")


def test_a_read_only_place_is_a_mesc_error(tmp_path, monkeypatch):
    def read_only(*a, **kw):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", read_only)
    with pytest.raises(MescError, match=r"cannot write in .* \(Read-only file system\)"):
        check_dir_output(tmp_path / "new", "package")


@pytest.mark.skipif(AS_ROOT, reason="root writes into a chmod 555 folder; the monkeypatched case covers it")
def test_a_chmod_555_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(MescError, match="cannot write in"):
            check_file_output(locked / "r.json", "--report")
    finally:
        locked.chmod(0o755)


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
