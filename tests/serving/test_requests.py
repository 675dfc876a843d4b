import io

import numpy as np
import pytest

from mesc.serving.requests import (ENCODED, IMAGES, Overrides, RequestError, parse_overrides,
                                   request_images)

EXITS = ["exit0", "exit1", "exit2"]
HWC = (8, 16, 3)


def _png(h=8, w=16):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 7, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_no_parameters_means_the_package_settings():
    assert parse_overrides(None, EXITS) == Overrides()
    assert parse_overrides({}, EXITS) == Overrides()


def test_exit_by_name_or_position_and_thresholds_one_or_per_exit():
    ov = parse_overrides({"exit": "exit1", "th_img": 0.5, "th_pix": "0.9,0.8,0"}, EXITS)
    assert ov == Overrides(exit=1, th_img=(0.5, 0.5, 0.5), th_pix=(0.9, 0.8, 0.0))
    assert parse_overrides({"exit": 2}, EXITS).exit == 2
    assert parse_overrides({"th_img": "0.7"}, EXITS).th_img == (0.7,) * 3


@pytest.mark.parametrize("params, named", [
    ({"exit": "exit9"}, "parameter 'exit'"),
    ({"exit": 3}, "parameter 'exit'"),
    ({"exit": True}, "parameter 'exit'"),
    ({"th_img": 1.5}, "parameter 'th_img'"),
    ({"th_pix": "nan"}, "parameter 'th_pix'"),
    ({"th_pix": "0.5,0.5"}, "parameter 'th_pix'"),
    ({"th_img": "high"}, "parameter 'th_img'"),
    ({"speed": 1}, "'speed'"),
])
def test_bad_parameters_are_named(params, named):
    with pytest.raises(RequestError, match=named):
        parse_overrides(params, EXITS)


def test_images_pass_and_encoded_files_decode():
    x = np.zeros((2, *HWC), np.uint8)
    assert request_images({IMAGES: x}, HWC) is x
    got = request_images({ENCODED: np.array([[_png()], [_png()]], dtype=object)}, HWC)
    assert got.shape == (2, *HWC) and got.dtype == np.uint8 and (got == 7).all()


@pytest.mark.parametrize("data, named", [
    ({}, "exactly one of the inputs"),
    ({IMAGES: np.zeros((1, *HWC), np.uint8), ENCODED: np.array([[b"x"]], dtype=object)}, "exactly one"),
    ({IMAGES: np.zeros((1, 8, 8, 3), np.uint8)}, "input 'images'"),
    ({IMAGES: np.zeros((1, *HWC), np.float32)}, "input 'images'"),
    ({ENCODED: np.array([[b"not an image"]], dtype=object)}, r"input 'encoded'\[0\]: cannot read"),
    ({ENCODED: np.array([[_png()], [_png(4, 4)]], dtype=object)}, r"input 'encoded'\[1\]: image is 4x4"),
])
def test_bad_inputs_are_named(data, named):
    with pytest.raises(RequestError, match=named):
        request_images(data, HWC)


def test_encoded_size_limit():
    with pytest.raises(RequestError, match=r"input 'encoded'\[0\]: .* more than the 10 this server accepts"):
        request_images({ENCODED: np.array([[_png()]], dtype=object)}, HWC, max_bytes=10)
