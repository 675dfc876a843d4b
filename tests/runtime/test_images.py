"""Reading images: bit depths and colour modes converted as documented, and every unreadable
file (decompression bombs included) an InputError that `mesc run` skips."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mesc.cli import cli
from mesc.runtime import images
from mesc.runtime.errors import InputError
from mesc.runtime.images import read_image


def _claim_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR patched to claim ``width`` x ``height`` (CRC fixed)."""
    start = 8 + 4  # signature, then the IHDR chunk's length
    ihdr = bytearray(png[start: start + 4 + 13])
    assert ihdr[:4] == b"IHDR"
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return png[:start] + bytes(ihdr) + crc + png[start + 4 + 13 + 4:]


def bomb_png(path, width=20000, height=20000):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    path.write_bytes(_claim_size(buf.getvalue(), width, height))
    return path


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    # a 16-bit PNG: recent Pillow opens it as "I;16", Pillow 9 (the floor) as "I" (32-bit ints)
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    rgb = read_image(tmp_path / "deep.png")
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb == rgb[..., :1]).all()  # grey replicated
    assert read_image(tmp_path / "deep.png", channels=1)[0, :, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16_bit_modes_are_scaled(tmp_path, mode):
    values = np.array([[0, 32768, 65535]])
    im = Image.frombytes(mode, (3, 1), values.astype(">u2" if mode == "I;16B" else "<i4").tobytes())
    im.save(tmp_path / "deep.tif")
    assert read_image(tmp_path / "deep.tif")[0, :, 0].tolist() == [0, 128, 255]


def test_out_of_range_32_bit_integers_and_float_images_are_refused(tmp_path):
    Image.frombytes("I", (2, 1), np.array([0, 70000], "<i4").tobytes()).save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match=r"wide.tif: I image holds values 0..70000, outside the 16-bit"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray(np.array([[0.25, 1.0]], np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(InputError, match="float.tif: 32-bit float images have no fixed range"):
        read_image(tmp_path / "float.tif")


def test_palette_goes_through_its_palette(tmp_path):
    im = Image.frombytes("P", (2, 1), bytes([0, 1]))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").tolist() == [[[10, 20, 30], [200, 100, 50]]]


def test_alpha_is_dropped_not_composited(tmp_path):
    Image.fromarray(np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], np.uint8), "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").tolist() == [[[10, 20, 30], [40, 50, 60]]]
    assert read_image(tmp_path / "a.png", channels=4)[0, 1].tolist() == [40, 50, 60, 128]
    Image.fromarray(np.array([[[90, 0]]], np.uint8), "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").tolist() == [[[90, 90, 90]]]


def test_a_header_claiming_20000x20000_is_refused_before_decoding(tmp_path):
    with pytest.raises(InputError, match=r"bomb.png: skipped as a possible decompression bomb \(Image size \(400000000 pixels\)"):
        read_image(bomb_png(tmp_path / "bomb.png"))


def test_pillows_own_bomb_warning_and_error_are_input_errors(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the warning line
    with pytest.raises(InputError, match="big.png: skipped as a possible decompression bomb"):
        read_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: Pillow's error
    with pytest.raises(InputError, match="big.png: skipped as a possible decompression bomb"):
        read_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(images, "MAX_PIXELS", 1599)
    with pytest.raises(InputError, match=r"big.png: the image is 40x40 \(WxH\) pixels, more than mesc reads"):
        read_image(tmp_path / "big.png")


def test_truncated_file_is_an_input_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(InputError, match="cut.png: cannot read the image"):
        read_image(tmp_path / "cut.png")


def test_run_skips_a_bomb_among_good_images(pkg_host, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(d / name)
    bomb_png(d / "b.png")
    res = CliRunner().invoke(cli, ["run", str(pkg_host), str(d), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "b.png: skipped as a possible decompression bomb" in res.output and "2 image(s) segmented, 1 skipped" in res.output
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["output"] for r in summary["images"]] == ["a.png", "c.png"]
    assert summary["failed"][0]["file"].endswith("b.png")
