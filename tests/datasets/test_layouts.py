"""The published layouts read as (image, mask) pairs with the exact class ids."""

import json

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
