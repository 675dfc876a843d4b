"""Synthetic scenes generator and the data folder reader (no torch needed)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mesc import data
from mesc.cli import cli
from mesc.errors import MescError

SIZE = (32, 64)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("s") / "set", 6, seed=3, size=SIZE)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_per_seed(tmp_path, synth):
    again = data.generate(tmp_path / "again", 6, seed=3, size=SIZE)
    assert _files(again) == _files(synth)
    other = data.generate(tmp_path / "other", 6, seed=4, size=SIZE)
    assert _files(other)["images/00000.png"] != _files(synth)["images/00000.png"]


def test_a_larger_count_extends_a_smaller_set(tmp_path, synth):
    small = data.generate(tmp_path / "small", 3, seed=3, size=SIZE)
    big, few = _files(synth), _files(small)
    assert all(few[k] == big[k] for k in few if k.startswith(("images/", "masks/")))


def test_layout_masks_match_images(synth):
    assert (synth / "classes.txt").read_text().split() == list(data.CLASSES)
    meta = json.loads((synth / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["size"] == list(SIZE) and len(meta["images"]) == 6
    pairs = data.read_folder(synth, require_masks=True)
    assert len(pairs) == 6
    seen = set()
    for (img_path, mask_path), entry in zip(pairs, meta["images"]):
        assert img_path.name == mask_path.name == entry["file"]
        image, mask = data.load_pair(img_path, mask_path)
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        assert mask.shape == SIZE and mask.dtype == np.uint8
        assert mask.max() < len(data.CLASSES)
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
        return np.mean([_colour_separability(*data.render_scene(np.random.default_rng([11, i]), (48, 96), d))
                        for i in range(8)])

    easy, mid, hard = mean_sep(0.05), mean_sep(0.5), mean_sep(0.95)
    assert easy > 0.95
    assert easy > mid > hard
    assert easy - hard > 0.3


def test_difficulty_crowds_the_scene():
    def classes_per_scene(d):
        masks = [data.render_scene(np.random.default_rng([5, i]), (64, 128), d)[1] for i in range(8)]
        return np.mean([len(np.unique(m)) for m in masks])

    assert classes_per_scene(1.0) > classes_per_scene(0.0) + 1


def test_read_folder_cityscapes_layout(tmp_path):
    img = np.zeros((8, 16, 3), np.uint8)
    for city, stem in (("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")):
        (tmp_path / "leftImg8bit" / "val" / city).mkdir(parents=True)
        (tmp_path / "gtFine" / "val" / city).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        if city == "aachen":
            Image.fromarray(np.full((8, 16), 255, np.uint8)).save(
                tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png")
    pairs = data.read_folder(tmp_path)
    assert [p.name for p, _ in pairs] == ["aachen_000000_000019_leftImg8bit.png", "bonn_000001_000019_leftImg8bit.png"]
    assert pairs[0][1].name == "aachen_000000_000019_gtFine_labelTrainIds.png" and pairs[1][1] is None
    with pytest.raises(MescError, match="1 of 2 images have no mask.*bonn_000001_000019_leftImg8bit.png"):
        data.read_folder(tmp_path, require_masks=True)


def test_read_folder_plain_images_and_errors(tmp_path):
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    pairs = data.read_folder(tmp_path)
    assert [(p.name, m) for p, m in pairs] == [("a.png", None), ("b.jpg", None)]
    with pytest.raises(MescError, match="b.jpg: cannot read the image"):
        data.load_image(pairs[1][0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MescError, match="empty holds no images"):
        data.read_folder(tmp_path / "empty")
    with pytest.raises(MescError, match="does not exist"):
        data.read_folder(tmp_path / "missing")


def test_mask_size_mismatch_names_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / "masks" / "x.png")
    (img, mask), = data.read_folder(tmp_path, require_masks=True)
    with pytest.raises(MescError, match=r"mask .*masks/x.png is 12x8 \(WxH\) but its image is 16x8"):
        data.load_pair(img, mask)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "masks" / "x.png")
    with pytest.raises(MescError, match="mask .*x.png has mode RGB"):
        data.load_pair(img, mask)


def test_synth_data_cli(tmp_path):
    out = tmp_path / "scenes"
    args = ["synth-data", "-o", str(out), "--count", "2", "--size", "32x48", "--difficulty", "0.2:0.4"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text())
    assert all(0.2 <= e["difficulty"] <= 0.4 for e in meta["images"])
    assert data.load_image(out / "images" / "00001.png").shape == (32, 48, 3)

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    assert CliRunner().invoke(cli, args + ["--force", "--count", "3"]).exit_code == 0
    assert len(list((out / "images").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind

    for bad, msg in ((["--size", "32"], "--size"), (["--difficulty", "0.5:0.2"], "--difficulty"),
                     (["--count", "0"], "--count")):
        res = CliRunner().invoke(cli, ["synth-data", "-o", str(tmp_path / "bad")] + bad)
        assert res.exit_code == 2 and msg in res.output, res.output


def test_masks_are_read_by_index_never_colour_converted(tmp_path):
    pal = Image.frombytes("P", (3, 1), bytes([0, 2, 255]))
    pal.putpalette([200, 10, 10, 0, 0, 0, 10, 200, 10] + [0] * 759)  # colours that mean nothing
    pal.save(tmp_path / "pal.png")
    assert data.load_mask(tmp_path / "pal.png").tolist() == [[0, 2, 255]]
    Image.fromarray(np.array([[1, 5, 255]], np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    assert data.load_mask(tmp_path / "deep.png").tolist() == [[1, 5, 255]]  # ids, not scaled
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bits.png")
    assert data.load_mask(tmp_path / "bits.png").tolist() == [[1, 0]]


def test_unreadable_masks_are_mesc_errors(tmp_path):
    Image.fromarray(np.array([[1, 300]], np.uint16)).save(tmp_path / "wide.png")
    with pytest.raises(MescError, match=r"mask .*wide.png holds ids 1..300; class ids are 0..255"):
        data.load_mask(tmp_path / "wide.png")
    Image.fromarray(np.zeros((2, 2, 2), np.uint8), "LA").save(tmp_path / "la.png")
    with pytest.raises(MescError, match="mask .*la.png has mode LA"):
        data.load_mask(tmp_path / "la.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(MescError, match="junk.png: cannot read the mask"):
        data.load_mask(tmp_path / "junk.png")


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
