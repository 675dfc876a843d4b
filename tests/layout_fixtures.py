"""Tiny data sets written in the published layouts (a few 4x6 images each)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

H, W = 4, 6


def rgb(path, h=H, w=W):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)


def cityscapes(root):
    """train: aachen (labelIds incl. void ids -> 255) and bonn (labelTrainIds); val: one image,
    no gtFine; test: one image."""
    ids = np.array([[7, 8, 0, 1, 24, 26]] * H, np.uint8)
    ids[1] = [9, 14, 33, 31, 23, 255]  # parking, guard rail -> 255; bicycle 18, train 16, sky 10
    for split, city, stem in (("train", "aachen", "aachen_000000_000019"), ("train", "bonn", "bonn_000001_000019"),
                              ("val", "lindau", "lindau_000000_000019"), ("test", "berlin", "berlin_000000_000019")):
        rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
    gt = root / "gtFine" / "train"
    (gt / "aachen").mkdir(parents=True)
    (gt / "bonn").mkdir(parents=True)
    Image.fromarray(ids).save(gt / "aachen" / "aachen_000000_000019_gtFine_labelIds.png")
    Image.fromarray(np.full((H, W), 3, np.uint8)).save(gt / "bonn" / "bonn_000001_000019_gtFine_labelTrainIds.png")
    # labelIds next to labelTrainIds: the train ids win
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(gt / "bonn" / "bonn_000001_000019_gtFine_labelIds.png")
    return ids


VOC_MASK = np.array([[0, 0, 15, 15, 255, 1]] * H, np.uint8)


def voc(root):
    """VOCdevkit/VOC2012: a (train), b (val, with mask), c (val, no mask); palette PNG masks."""
    base = root / "VOCdevkit" / "VOC2012"
    for name in "abc":
        rgb(base / "JPEGImages" / f"{name}.jpg")
    (base / "SegmentationClass").mkdir(parents=True)
    palette = [0, 0, 0, 128, 0, 0] + [v for i in range(2, 256) for v in (i, 255 - i, i // 2)]
    for name, mask in (("a", VOC_MASK), ("b", np.zeros((H, W), np.uint8))):
        im = Image.fromarray(mask, mode="P")
        im.putpalette(palette)
        im.save(base / "SegmentationClass" / f"{name}.png")
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("a\n")
    (lists / "val.txt").write_text("b\nc\n")
    (lists / "trainval.txt").write_text("a\nb\nc\n")
    return base


SBD_MASK = np.array([[0, 7, 7, 20, 20, 0]] * H, np.uint8)


def sbd(root):
    from scipy.io import savemat

    base = root / "benchmark_RELEASE" / "dataset"
    (base / "cls").mkdir(parents=True)
    for name in ("2008_000002", "2008_000003"):
        rgb(base / "img" / f"{name}.jpg")
        savemat(base / "cls" / f"{name}.mat",
                {"GTcls": {"Segmentation": SBD_MASK, "Boundaries": np.zeros((1,), object),
                           "CategoriesPresent": np.array([7, 20])}})
    (base / "train.txt").write_text("2008_000002\n")
    (base / "val.txt").write_text("2008_000003\n")
    return base


def coco(root):
    """val2017: image 1 with a person polygon (COCO 1 -> VOC 15), a car RLE over it (COCO 3 -> 7,
    smaller: painted last) and a non-VOC giraffe (25 -> background); image 2 with no annotation."""
    from pycocotools import mask as mask_utils

    h, w = 8, 10
    for name in ("000000000001.jpg", "000000000002.jpg"):
        rgb(root / "val2017" / name, h, w)
    car = np.zeros((h, w), np.uint8, order="F")
    car[2:4, 2:5] = 1
    rle = mask_utils.encode(np.asfortranarray(car))
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 24.0,
         "segmentation": [[0, 0, 6, 0, 6, 4, 0, 4]], "bbox": [0, 0, 6, 4]},
        {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 6.0, "segmentation": rle,
         "bbox": [2, 2, 3, 2]},
        {"id": 3, "image_id": 1, "category_id": 25, "iscrowd": 0, "area": 8.0,
         "segmentation": [[7, 5, 9, 5, 9, 8, 7, 8]], "bbox": [7, 5, 2, 3]},
    ]
    doc = {"images": [{"id": 1, "file_name": "000000000001.jpg", "height": h, "width": w},
                      {"id": 2, "file_name": "000000000002.jpg", "height": h, "width": w}],
           "annotations": anns,
           "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 25, "name": "giraffe"}]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    return car
