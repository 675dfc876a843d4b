"""Where `mesc calibrate` may write: --report, --plot and --cache checked before any work."""

import pytest
from click.testing import CliRunner

from mesc.cli import cli


def _calibrate(*args):
    res = CliRunner().invoke(cli, ["calibrate", *map(str, args)])
    return res.exit_code, res.output


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "keep.txt").write_bytes(b"labels")
    return d


def test_a_report_or_plot_inside_an_input_is_refused(toy_package, data_dir):
    for option, path, what in (("--report", toy_package / "cal.json", "PACKAGE"),
                               ("--plot", data_dir / "p.png", "--data"),
                               ("--report", data_dir / "keep.txt", "--data")):
        code, text = _calibrate(toy_package, "--data", data_dir, "--max-drop", "1", option, path, "--force")
        assert code == 2 and f"lies inside the input {what}" in text, text
    assert not (toy_package / "cal.json").exists() and (data_dir / "keep.txt").read_bytes() == b"labels"


def test_an_existing_report_needs_force_and_unwritable_places_are_refused(toy_package, data_dir, tmp_path):
    report = tmp_path / "cal.json"
    report.write_text("old")
    code, text = _calibrate(toy_package, "--data", data_dir, "--max-drop", "1", "--report", report)
    assert code == 2 and "already exists; pass --force" in text and report.read_text() == "old"
    code, text = _calibrate(toy_package, "--data", data_dir, "--max-drop", "1", "--report", report / "r.json")
    assert code == 2 and "is not a directory" in text and "Traceback" not in text


def test_a_cache_that_is_not_mesc_s_or_inside_an_input_is_refused(toy_package, data_dir, tmp_path):
    foreign = tmp_path / "thesis.npz"
    foreign.write_bytes(b"not a cache")
    for cache, message in ((foreign, "not a mesc calibration cache"),
                           (toy_package / "memo.npz", "lies inside the input PACKAGE"),
                           (data_dir / "memo.npz", "lies inside the input --data")):
        code, text = _calibrate(toy_package, "--data", data_dir, "--max-drop", "1", "--cache", cache, "--force")
        assert code == 2 and message in text, text
    assert foreign.read_bytes() == b"not a cache" and not (toy_package / "memo.npz").exists()
