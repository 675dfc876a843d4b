"""The synthetic-scene generator and mesc synth-data (no torch needed)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mesc.cli import cli
from mesc.datasets import read_folder, synthetic
from mesc.datasets.images import load_image, load_pair

SIZE = (32, 64)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("s") / "set", 6, seed=3, size=SIZE)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_per_seed(tmp_path, synth):
    again = synthetic.generate(tmp_path / "again", 6, seed=3, size=SIZE)
    assert _files(again) == _files(synth)
    other = synthetic.generate(tmp_path / "other", 6, seed=4, size=SIZE)
    assert _files(other)["images/00000.png"] != _files(synth)["images/00000.png"]


def test_a_larger_count_extends_a_smaller_set(tmp_path, synth):
    small = synthetic.generate(tmp_path / "small", 3, seed=3, size=SIZE)
    big, few = _files(synth), _files(small)
    assert all(few[k] == big[k] for k in few if k.startswith(("images/", "masks/")))


def test_layout_masks_match_images(synth):
    assert (synth / "classes.txt").read_text().split() == list(synthetic.CLASSES)
    meta = json.loads((synth / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["size"] == list(SIZE) and len(meta["images"]) == 6
    pairs = read_folder(synth, require_masks=True)
    assert len(pairs) == 6
    seen = set()
    for (img_path, mask_path), entry in zip(pairs, meta["images"]):
        assert img_path.name == mask_path.name == entry["file"]
        image, mask = load_pair(img_path, mask_path)
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        assert mask.shape == SIZE and mask.dtype == np.uint8
        assert mask.max() < len(synthetic.CLASSES)
        assert 0.0 <= entry["difficulty"] <= 1.0
        seen |= set(np.unique(mask).tolist())
    assert len(seen) >= 4  # the scenes really hold several classes


def _colour_separability(image, mask):
    """Balanced accuracy of the best per-image colour-only classifier (nearest class mean):
    1.0 when colour alone solves the scene."""
    x, y = image.reshape(-1, 3).astype(np.float64), mask.ravel()
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    pred = classes[((x[:, None] - means[None]) ** 2).sum(-1).argmin(1)]
    return np.mean([(pred[y == c] == c).mean() for c in classes])


def test_difficulty_makes_colour_less_informative():
    def mean_sep(d):
        return np.mean([_colour_separability(*synthetic.render_scene(np.random.default_rng([11, i]), (48, 96), d))
                        for i in range(8)])

    easy, mid, hard = mean_sep(0.05), mean_sep(0.5), mean_sep(0.95)
    assert easy > 0.95
    assert easy > mid > hard
    assert easy - hard > 0.3


def test_difficulty_crowds_the_scene():
    def classes_per_scene(d):
        masks = [synthetic.render_scene(np.random.default_rng([5, i]), (64, 128), d)[1] for i in range(8)]
        return np.mean([len(np.unique(m)) for m in masks])

    assert classes_per_scene(1.0) > classes_per_scene(0.0) + 1


def test_synth_data_cli(tmp_path):
    out = tmp_path / "scenes"
    args = ["synth-data", "-o", str(out), "--count", "2", "--size", "32x48", "--difficulty", "0.2:0.4"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text())
    assert all(0.2 <= e["difficulty"] <= 0.4 for e in meta["images"])
    assert load_image(out / "images" / "00001.png").shape == (32, 48, 3)

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    assert CliRunner().invoke(cli, args + ["--force", "--count", "3"]).exit_code == 0
    assert len(list((out / "images").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind

    for bad, msg in ((["--size", "32"], "--size"), (["--difficulty", "0.5:0.2"], "--difficulty"),
                     (["--count", "0"], "--count")):
        res = CliRunner().invoke(cli, ["synth-data", "-o", str(tmp_path / "bad")] + bad)
        assert res.exit_code == 2 and msg in res.output, res.output


def test_synth_data_force_replaces_only_synth_data(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_bytes(b"mine")
    args = ["synth-data", "--count", "1", "--size", "16x16", "--force", "-o"]
    res = CliRunner().invoke(cli, args + [str(mine)])
    assert res.exit_code == 2 and "holds 1 file(s) mesc did not write: notes.txt" in res.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_bytes() == b"mine"
    monkeypatch.chdir(mine)
    res = CliRunner().invoke(cli, args + ["."])
    assert res.exit_code == 2 and "current directory" in res.output
    res = CliRunner().invoke(cli, args + [str(mine / "notes.txt" / "out")])
    assert res.exit_code == 2 and "is not a directory" in res.output


def test_force_still_recognises_a_folder_written_before_the_generator_moved(tmp_path):
    # the generator moved from mesc/data.py; the marker on disk names its first home and must stay
    old = synthetic.generate(tmp_path / "old", 1, size=(16, 16))
    meta = json.loads((old / "meta.json").read_text())
    assert meta["generator"] == "mesc.data.render_scene"
    res = CliRunner().invoke(cli, ["synth-data", "--count", "2", "--size", "16x16", "--force", "-o", str(old)])
    assert res.exit_code == 0, res.output
