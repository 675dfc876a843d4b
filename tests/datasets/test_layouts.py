"""The published layouts read as (image, mask) pairs with the exact class ids."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from mesc.datasets import read_folder
from mesc.datasets.images import load_pair
from mesc.errors import MescError
import layout_fixtures as fixtures


def masks(pairs):
    return [load_pair(i, m)[1] for i, m in pairs]


def test_cityscapes_splits_and_label_ids(tmp_path):
    ids = fixtures.cityscapes(tmp_path)
    assert len(read_folder(tmp_path)) == 4  # no split: all merged, as before
    train = read_folder(tmp_path, require_masks=True, split="train")
    assert [p.name for p, _ in train] == ["aachen_000000_000019_leftImg8bit.png", "bonn_000001_000019_leftImg8bit.png"]
    aachen, bonn = masks(train)
    assert aachen[0].tolist() == [0, 1, 255, 255, 11, 13]
    assert aachen[1].tolist() == [255, 255, 18, 16, 10, 255]
    assert (bonn == 3).all()  # labelTrainIds used as is, over the labelIds beside it
    assert ids.shape == aachen.shape
    with pytest.raises(MescError, match="1 of 1 images have no mask.*lindau"):
        read_folder(tmp_path, require_masks=True, split="val")
    with pytest.raises(MescError, match=r"no split 'trainval' \(splits: test, train, val\)"):
        read_folder(tmp_path, split="trainval")


def test_voc_palette_masks_and_lists(tmp_path):
    fixtures.voc(tmp_path)
    assert [p.name for p, _ in read_folder(tmp_path, split="train")] == ["a.jpg"]
    assert len(read_folder(tmp_path, split="trainval")) == 3
    val = read_folder(tmp_path, split="val")
    assert [(p.name, m is None) for p, m in val] == [("b.jpg", False), ("c.jpg", True)]
    (mask,) = masks(read_folder(tmp_path, split="train", require_masks=True))
    assert mask.tolist() == fixtures.VOC_MASK.tolist()  # palette indices, 255 border kept as ignore


def test_sbd_mat_masks(tmp_path):
    fixtures.sbd(tmp_path)
    pairs = read_folder(tmp_path, require_masks=True, split="val")
    assert [p.name for p, _ in pairs] == ["2008_000003.jpg"]
    assert masks(pairs)[0].tolist() == fixtures.SBD_MASK.tolist()
    assert len(read_folder(tmp_path)) == 2


def test_coco_as_voc_classes(tmp_path):
    car = fixtures.coco(tmp_path)
    pairs = read_folder(tmp_path, require_masks=True, split="val")
    assert [p.name for p, _ in pairs] == ["000000000001.jpg", "000000000002.jpg"]
    one, two = masks(pairs)
    want = np.zeros((8, 10), np.uint8)
    want[0:4, 0:6] = 15  # person polygon
    want[car == 1] = 7  # the smaller car (RLE) over it; the giraffe stays background
    assert one.tolist() == want.tolist()
    assert not two.any()


def test_coco_crowd_is_ignored(tmp_path):
    fixtures.coco(tmp_path)
    path = tmp_path / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"].append({"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 1, "area": 4.0,
                               "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]], "bbox": [0, 0, 2, 2]})
    path.write_text(json.dumps(doc))
    two = masks(read_folder(tmp_path, split="val"))[1]
    assert (two[:2, :2] == 255).all() and (two[2:] == 0).all()


def test_mask_size_is_checked_per_image(tmp_path):
    fixtures.cityscapes(tmp_path)
    big = tmp_path / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    fixtures.rgb(big, 5, 6)
    img, mask = read_folder(tmp_path, split="train")[0]
    with pytest.raises(MescError, match=r"aachen_000000_000019_gtFine_labelIds.png is 6x4 \(WxH\) but its image is 6x5"):
        load_pair(img, mask)


def test_generic_folder_split_subfolder(tmp_path):
    for split in ("train", "val"):
        fixtures.rgb(tmp_path / split / "images" / "x.png")
    assert read_folder(tmp_path, split="val")[0][0] == tmp_path / "val" / "images" / "x.png"


def test_data_check_cli(tmp_path):
    from mesc.cli import cli

    fixtures.cityscapes(tmp_path)
    res = CliRunner().invoke(cli, ["data", "check", str(tmp_path), "--split", "train", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["format"] == "cityscapes" and rep["splits"] == {"test": 1, "train": 2, "val": 1}
    assert rep["images"] == rep["labelled"] == 2 and len(rep["classes"]) == 19
    share = {h["name"]: h["share"] for h in rep["histogram"]}
    # 48 pixels: bonn's 24 wall; aachen's 3 each of road, sidewalk, person, car, 1 each of bicycle,
    # train, sky, and 9 ignored (ids 0, 1, 9, 14, 255)
    assert share["wall"] == 0.5 and share["road"] == round(3 / 48, 6) and share["bicycle"] == round(1 / 48, 6)
    assert rep["ignore_share"] == round(9 / 48, 6)
    res = CliRunner().invoke(cli, ["data", "check", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "cityscapes" in res.output and "2 images without labels" in res.output and "(ignore)" in res.output


def test_data_check_voc_table(tmp_path):
    from mesc.datasets.check import check

    fixtures.voc(tmp_path)
    rep = check(tmp_path, "val")
    assert rep["format"] == "voc" and rep["splits"] == {"train": 1, "trainval": 3, "val": 2}
    assert rep["without_labels"] == [str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages" / "c.jpg")]
    assert rep["histogram"][0] == {"id": 0, "name": "background", "share": 1.0}


# -- corrupt annotations: one line naming the file (and the entry or field), whoever reads them -----

def _coco_broken(root, how):
    fixtures.coco(root)
    path = root / "annotations" / "instances_val2017.json"
    if how == "truncated":
        path.write_text(path.read_text()[:-40])
        return path
    doc = json.loads(path.read_text())
    if how == "no height":
        del doc["images"][1]["height"]
    elif how == "images not a list":
        doc["images"] = {"1": doc["images"][0]}
    elif how == "segmentation neither":
        doc["annotations"][0]["segmentation"] = 5
    elif how == "rle counts":
        doc["annotations"][1]["segmentation"]["counts"] = {"x": 1}
    elif how == "polygon of strings":
        doc["annotations"][0]["segmentation"] = [["a", "b", "c", "d", "e", "f"]]
    path.write_text(json.dumps(doc))
    return path


COCO_CASES = [
    ("truncated", r"instances_val2017.json: not a valid JSON file"),
    ("no height", r"instances_val2017.json: images\[1\] \(id 2\) has no 'height'"),
    ("images not a list", r"instances_val2017.json: 'images' must be a list, got dict"),
    ("segmentation neither", r"annotations\[0\] \(id 1\): 'segmentation' is neither polygons .* nor RLE"),
    ("rle counts", r"annotations\[1\] \(id 2\): 'segmentation': RLE 'counts' must be a string or a list"),
    ("polygon of strings", r"instances_val2017.json: annotation 1 of image 1: its segmentation cannot be drawn"),
]


@pytest.mark.parametrize("how, named", COCO_CASES)
def test_a_corrupt_coco_file_is_one_error_naming_the_file_and_entry(tmp_path, how, named):
    from mesc.datasets import coco

    coco._coco.cache_clear()
    _coco_broken(tmp_path, how)
    with pytest.raises(MescError, match=named):
        masks(read_folder(tmp_path, split="val"))


@pytest.mark.parametrize("how, named", COCO_CASES[:4])
def test_data_check_train_eval_and_calibrate_give_the_same_line(tmp_path, toy_package, how, named):
    import importlib.util

    from mesc.cli import cli
    from mesc.datasets import coco

    has_torch = importlib.util.find_spec("torch") is not None
    _coco_broken(tmp_path / "coco", how)
    for args in (["data", "check", str(tmp_path / "coco")],
                 ["eval", str(toy_package), "--data", str(tmp_path / "coco"), "--resize"],
                 ["calibrate", str(toy_package), "--data", str(tmp_path / "coco"), "--max-drop", "1", "--resize"],
                 ["train", "--model", "demo", "--data", str(tmp_path / "coco"), "-o", str(tmp_path / "m.pt")]):
        coco._coco.cache_clear()
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.startswith("mesc: error: ") and len(res.output.strip().splitlines()) == 1, res.output
        if args[0] == "train" and not has_torch:  # the Python 3.8 stage: training's missing torch comes first
            assert "pip install 'mesc[export]'" in res.output, res.output
        else:
            assert re.search(named, res.output), (args, res.output)


@pytest.mark.parametrize("how, named", [
    ("truncated", r"SBD mask .*2008_000003.mat: not a readable MATLAB file"),
    ("no GTcls", r"SBD mask .*2008_000003.mat: no 'GTcls' struct"),
    ("no Segmentation", r"SBD mask .*2008_000003.mat: 'GTcls' has no 'Segmentation' field"),
])
def test_a_corrupt_sbd_mat_is_one_error_naming_the_file(tmp_path, how, named):
    from scipy.io import savemat

    from mesc.cli import cli

    base = fixtures.sbd(tmp_path)
    mat = base / "cls" / "2008_000003.mat"
    if how == "truncated":
        mat.write_bytes(mat.read_bytes()[:100])
    elif how == "no GTcls":
        savemat(mat, {"other": np.zeros((2, 2))})
    else:
        savemat(mat, {"GTcls": {"Boundaries": np.zeros((1,), object)}})
    with pytest.raises(MescError, match=named):
        masks(read_folder(tmp_path, split="val"))
    res = CliRunner().invoke(cli, ["data", "check", str(tmp_path)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output


def test_data_check_flags_label_ids_the_layouts_table_does_not_know(tmp_path):
    from PIL import Image

    from mesc.datasets.check import check, format_check

    fixtures.cityscapes(tmp_path)
    label_ids = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    ids = np.array(Image.open(label_ids))
    ids[0, 0] = 200
    Image.fromarray(ids).save(label_ids)
    rep = check(tmp_path, "train")
    assert rep["unknown_label_ids"] == {"200": str(label_ids)}
    assert "label ids the cityscapes table does not know (read as ignore): 200" in format_check(rep)


def test_images_a_split_lists_that_do_not_exist_are_missing_not_unlabelled(tmp_path):
    from mesc.datasets.check import check, format_check

    base = fixtures.voc(tmp_path)
    (base / "JPEGImages" / "b.jpg").unlink()  # listed by val.txt, with its mask, but not on disk
    rep = check(tmp_path, "val")
    assert rep["missing"] == [str(base / "JPEGImages" / "b.jpg")]
    assert rep["without_labels"] == [str(base / "JPEGImages" / "c.jpg")] and rep["labelled"] == 0
    assert "1 images listed but missing: " in format_check(rep)
    with pytest.raises(MescError, match=r"1 of 2 images its split lists are missing: .*b.jpg"):
        read_folder(tmp_path, split="val")
