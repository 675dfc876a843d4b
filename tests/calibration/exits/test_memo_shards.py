"""The memo built in shards and merged once: equal to one run to the last bit; shards of other
packages, data or settings refused by name; the CLI's --memo-only / --shard; no torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mesc.calibration.exits import memo_shards
from mesc.calibration.exits.memo import Memo, evaluate
from mesc.errors import MescError

GRID = [0.3, 0.5]


@pytest.fixture(scope="module")
def toy(policy_package, tmp_path_factory):
    from mesc.datasets.synthetic import generate

    return policy_package, generate(tmp_path_factory.mktemp("shard_data") / "data", 11, seed=5, size=(32, 64))


def _same(a: Memo, b: Memo) -> None:
    assert a.images == b.images and a.exits == b.exits
    for x, y in [(a.inter, b.inter), (a.union, b.union), (a.features, b.features), (a.th_pix_grid, b.th_pix_grid),
                 *[(a.scores[k], b.scores[k]) for k in a.scores]]:
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()  # bit for bit
    assert set(a.scores) == set(b.scores)


def test_shards_merged_equal_one_run(toy, tmp_path):
    pkg, data = toy
    whole = evaluate(pkg, data, th_pix_grid=GRID, batch=2, cache=tmp_path / "whole.npz")
    cache = tmp_path / "memo.npz"
    parts = [evaluate(pkg, data, th_pix_grid=GRID, batch=2, cache=cache, shard=(i, 3)) for i in range(3)]
    assert [p.n for p in parts] == [4, 4, 3]  # whole batches of 2
    assert not cache.exists() and sorted(memo_shards.shard_files(cache)) == [(0, 3), (1, 3), (2, 3)]
    merged = evaluate(pkg, data, th_pix_grid=GRID, batch=2, cache=cache)
    assert merged.meta["merged_shards"] == 3 and not merged.meta["cached"]
    _same(merged, whole)
    again = evaluate(pkg, data, th_pix_grid=GRID, batch=2, cache=cache)  # the merged cache, reused
    assert again.meta["cached"]
    _same(again, whole)


def test_shard_rows_are_whole_batches_in_order():
    rows = [list(memo_shards.rows(11, (i, 3), 2)) for i in range(3)]
    assert sum(rows, []) == list(range(11))
    assert all(r[0] % 2 == 0 for r in rows if r)
    assert list(memo_shards.rows(3, (3, 4), 8)) == [0, 1, 2] and list(memo_shards.rows(3, (0, 4), 8)) == []


def _shards(pkg, data, cache, n=2, **kw):
    for i in range(n):
        evaluate(pkg, data, th_pix_grid=GRID, batch=4, cache=cache, shard=(i, n), **kw)


@pytest.mark.parametrize("change, field", [
    ({"th_pix_grid": [0.3, 0.6]}, "th_pix grid"),
    ({"resize": True}, "--resize"),
    ({"batch": 2}, "batch"),
    ({"limit": 9}, "calibration data"),
])
def test_a_shard_made_otherwise_is_refused_by_name(toy, tmp_path, change, field):
    pkg, data = toy
    cache = tmp_path / "memo.npz"
    _shards(pkg, data, cache)
    kw = {"th_pix_grid": GRID, "batch": 4, **change}
    with pytest.raises(MescError, match=f"made with another {field}"):
        evaluate(pkg, data, cache=cache, **kw)


def test_a_shard_of_another_package_is_refused(toy, tmp_path):
    pkg, data = toy
    other = tmp_path / "other"
    shutil.copytree(pkg, other)
    manifest = json.loads((other / "mesc.json").read_text())
    name = sorted(manifest["files"])[0]
    manifest["files"][name] = "0" * 64  # as if another export
    (other / "mesc.json").write_text(json.dumps(manifest))
    cache = tmp_path / "memo.npz"
    _shards(pkg, data, cache)
    from mesc.package import Package

    from mesc.calibration.exits.memo import MEMO_VERSION, calibration_pairs
    from mesc.policy import COMPILED_POLICY_KEYS

    fields = memo_shards.fields(Package.load(other, verify_checksums=False), calibration_pairs(data), data, GRID,
                                False, "onnxruntime/cpu", 4, MEMO_VERSION, COMPILED_POLICY_KEYS)
    with pytest.raises(MescError, match=r"made with another package \(its files' checksums\)"):
        memo_shards.merge(cache, fields, Memo.load)


def test_missing_and_mixed_shards_are_refused(toy, tmp_path):
    pkg, data = toy
    cache = tmp_path / "memo.npz"
    evaluate(pkg, data, th_pix_grid=GRID, batch=4, cache=cache, shard=(1, 3))
    with pytest.raises(MescError, match=r"shard\(s\) 0/3, 2/3 of 3 missing"):
        evaluate(pkg, data, th_pix_grid=GRID, batch=4, cache=cache)
    evaluate(pkg, data, th_pix_grid=GRID, batch=4, cache=cache, shard=(0, 2))
    with pytest.raises(MescError, match="different splits"):
        evaluate(pkg, data, th_pix_grid=GRID, batch=4, cache=cache)


def test_the_shard_file_is_an_output_mesc_owns(toy, tmp_path):
    """A file at the shard's path that mesc did not write is never replaced."""
    pkg, data = toy
    cache = tmp_path / "memo.npz"
    memo_shards.shard_path(cache, 0, 2).write_text("mine")
    with pytest.raises(MescError, match="is not a mesc calibration cache"):
        evaluate(pkg, data, th_pix_grid=GRID, cache=cache, shard=(0, 2))
    assert memo_shards.shard_path(cache, 0, 2).read_text() == "mine"


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/2", "1/0"])
def test_bad_shards_are_refused(text):
    with pytest.raises(MescError, match="--shard"):
        memo_shards.parse_shard(text)


def test_the_cli_builds_shards_and_calibrates_on_their_merge(toy, tmp_path):
    from mesc.cli import cli

    pkg, data = toy
    cache = tmp_path / "memo.npz"
    for i in range(2):
        res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(data), "--cache", str(cache),
                                       "--memo-only", "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
        assert f"(shard {i}/2) in {memo_shards.shard_path(cache, i, 2)}" in res.output
    res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(data), "--cache", str(cache),
                                   "--max-drop", "5", "--warn-images", "0"])
    assert res.exit_code == 0, res.output
    assert Memo.load(cache).meta["merged_shards"] == 2
    for args, message in [(["--shard", "0/2"], "--shard goes with --memo-only"),
                          (["--memo-only", "--max-drop", "1"], "--max-drop would do nothing"),
                          (["--memo-only", "--shard", "2/2"], "I must be in 0..N-1")]:
        res = CliRunner().invoke(cli, ["calibrate", str(pkg), "--data", str(data), "--cache", str(cache), *args])
        assert res.exit_code == 2 and message in res.output, res.output


def test_the_memo_pass_imports_no_torch(toy, tmp_path):
    pkg, data = toy
    code = ("import sys\n"
            "from mesc.calibration.exits.calibration import build_memo\n"
            f"build_memo({str(pkg)!r}, {str(data)!r}, {str(tmp_path / 'memo.npz')!r}, shard=(0, 2))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(pkg).parent)
    assert res.returncode == 0, res.stderr
    assert memo_shards.shard_path(tmp_path / "memo.npz", 0, 2).is_file()
