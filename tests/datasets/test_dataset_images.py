"""The one reader of data-set files (mesc.datasets.images) and the folder listing: images, masks
read by their ids, sizes checked against each other; every failure a MescError naming the file."""

import numpy as np
import pytest
from PIL import Image

from mesc.datasets import read_folder
from mesc.datasets.images import image_size, load_image, load_mask, load_pair
from mesc.errors import MescError


def test_read_folder_cityscapes_layout(tmp_path):
    img = np.zeros((8, 16, 3), np.uint8)
    for city, stem in (("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")):
        (tmp_path / "leftImg8bit" / "val" / city).mkdir(parents=True)
        (tmp_path / "gtFine" / "val" / city).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        if city == "aachen":
            Image.fromarray(np.full((8, 16), 255, np.uint8)).save(
                tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png")
    pairs = read_folder(tmp_path)
    assert [p.name for p, _ in pairs] == ["aachen_000000_000019_leftImg8bit.png", "bonn_000001_000019_leftImg8bit.png"]
    assert pairs[0][1].name == "aachen_000000_000019_gtFine_labelTrainIds.png" and pairs[1][1] is None
    with pytest.raises(MescError, match="1 of 2 images have no mask.*bonn_000001_000019_leftImg8bit.png"):
        read_folder(tmp_path, require_masks=True)


def test_read_folder_plain_images_and_errors(tmp_path):
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    pairs = read_folder(tmp_path)
    assert [(p.name, m) for p, m in pairs] == [("a.png", None), ("b.jpg", None)]
    with pytest.raises(MescError, match="b.jpg: cannot read the image"):
        load_image(pairs[1][0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MescError, match="empty holds no images"):
        read_folder(tmp_path / "empty")
    with pytest.raises(MescError, match="does not exist"):
        read_folder(tmp_path / "missing")


def test_mask_size_mismatch_names_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / "masks" / "x.png")
    (img, mask), = read_folder(tmp_path, require_masks=True)
    with pytest.raises(MescError, match=r"mask .*masks/x.png is 12x8 \(WxH\) but its image is 16x8"):
        load_pair(img, mask)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "masks" / "x.png")
    with pytest.raises(MescError, match="mask .*x.png has mode RGB"):
        load_pair(img, mask)


def test_masks_are_read_by_index_never_colour_converted(tmp_path):
    pal = Image.frombytes("P", (3, 1), bytes([0, 2, 255]))
    pal.putpalette([200, 10, 10, 0, 0, 0, 10, 200, 10] + [0] * 759)  # colours that mean nothing
    pal.save(tmp_path / "pal.png")
    assert load_mask(tmp_path / "pal.png").tolist() == [[0, 2, 255]]
    Image.fromarray(np.array([[1, 5, 255]], np.uint16)).save(tmp_path / "deep.png")
    # a 16-bit PNG: recent Pillow opens it as "I;16", Pillow 9 (the floor) as "I" (32-bit ints)
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    assert load_mask(tmp_path / "deep.png").tolist() == [[1, 5, 255]]  # ids, not scaled
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bits.png")
    assert load_mask(tmp_path / "bits.png").tolist() == [[1, 0]]


def test_unreadable_masks_are_mesc_errors(tmp_path):
    Image.fromarray(np.array([[1, 300]], np.uint16)).save(tmp_path / "wide.png")
    with pytest.raises(MescError, match=r"mask .*wide.png holds ids 1..300; class ids are 0..255"):
        load_mask(tmp_path / "wide.png")
    Image.fromarray(np.zeros((2, 2, 2), np.uint8), "LA").save(tmp_path / "la.png")
    with pytest.raises(MescError, match="mask .*la.png has mode LA"):
        load_mask(tmp_path / "la.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(MescError, match="junk.png: cannot read the mask"):
        load_mask(tmp_path / "junk.png")


def test_image_size_reads_the_header_and_names_an_unreadable_file(tmp_path):
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png") == (8, 16)
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(MescError, match="b.png: cannot read the image"):
        image_size(tmp_path / "b.png")
