"""uint8 images through the package's entry segment (normalised on the device) against the same
images normalised on the host: the same labels and confidences, batch 1 and compacted batches;
float input skips the entry; packages without one (the format before it) normalise on the host
as they always did."""

import numpy as np
import pytest

import mesc
from exported import export_toy
from runtime_checks import assert_same_results, spread_thresholds
from toy_data import SHAPE

import mesc.runtime.pipeline as pipeline_mod


@pytest.fixture(scope="module")
def u8_images():
    """Eight uint8 H x W x C images from flat to full contrast (the exits' confidences spread)."""
    rng = np.random.default_rng(5)
    _, c, h, w = SHAPE
    noise = rng.integers(0, 256, (8, h, w, c)).astype(np.float32) - 127.5
    contrast = np.geomspace(0.02, 1.0, 8).astype(np.float32)[:, None, None, None]
    return np.clip(127.5 + noise * contrast, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pkg_old(tmp_path_factory):
    """The in-graph-policy toy exported without an entry: uint8 normalised on the host."""
    return export_toy("three_exits", tmp_path_factory.mktemp("old") / "pkg", input_shape=SHAPE, strides=[2, 4, 4],
                      dynamic_batch=True, policy="top1", host_normalize=True)


_same = assert_same_results


def test_uint8_through_the_entry_equals_host_normalised_float(pkg, u8_images):
    with mesc.load(pkg) as pipe:
        assert pipe.entry is not None
        floats = pipe.host_normalize(u8_images)
        if pipe.in_graph:  # th_pix 0.3: the toy's random weights are sure of few pixels of these images
            assert spread_thresholds(pipe, floats, th_pix=0.3) == 3
        u8, fl = pipe(u8_images), pipe(floats)
        _same(fl, u8)
        if pipe.in_graph:
            assert len({r.exit for r in u8}) == 3  # the batch compacted on the way
        _same([pipe(im[None])[0] for im in floats], [pipe(im) for im in u8_images])  # batch 1, and one H x W x C
        _same(pipe(floats, exit=1), pipe(u8_images, exit=1))
        _same(pipe([floats[i:i + 1] for i in range(3)]), pipe(list(u8_images[:3])))
        for a, b in zip(list(pipe.anytime(floats[:3])), list(pipe.anytime(u8_images[:3]))):
            _same(a, b)
        # the entry's output is the host's float batch, bit for bit
        np.testing.assert_array_equal(pipe.tensors(u8_images)[pipe.input_name], floats)
        # uint8 runs the entry first; float starts at the first chunk
        assert list(u8[0].timings["segments"])[0] == "entry"
        assert "entry" not in fl[0].timings["segments"]


def test_float_input_skips_the_entry(pkg_graph, u8_images, monkeypatch):
    with mesc.load(pkg_graph) as pipe:
        ran = []
        real = pipe.runner.run
        monkeypatch.setattr(pipe.runner, "run", lambda seg, feeds, out: ran.append(seg.name) or real(seg, feeds, out))
        pipe(pipe.host_normalize(u8_images[:2]))
        assert "entry" not in ran and ran[0] == "chunk0"
        ran.clear()
        pipe(u8_images[:2])
        assert ran[:2] == ["entry", "chunk0"] and ran.count("entry") == 1
        assert "entry" not in pipe.tensors(pipe.host_normalize(u8_images[:1]))


def test_uint8_is_neither_copied_nor_normalised_on_the_host(pkg_graph, u8_images, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("normalised on the host")

    monkeypatch.setattr(pipeline_mod, "normalize", refuse)
    with mesc.load(pkg_graph) as pipe:
        one, single = pipe.prepare(u8_images[0])
        assert single and one.shape == (1, *u8_images.shape[1:]) and np.shares_memory(one, u8_images)
        batch, single = pipe.prepare(u8_images)
        assert not single and batch is u8_images  # C-contiguous already: taken as it is
        listed, _ = pipe.prepare(list(u8_images[:3]))
        assert listed.dtype == np.uint8 and listed.shape == (3, *u8_images.shape[1:])
        assert pipe(u8_images)[0].labels.shape == u8_images.shape[1:3]


def test_a_list_mixing_uint8_images_and_a_float_batch_normalises_on_the_host(pkg_graph, u8_images):
    with mesc.load(pkg_graph) as pipe:
        floats = pipe.host_normalize(u8_images[:3])
        x, _ = pipe.prepare([u8_images[0], floats[1:3]])
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, floats)
        _same(pipe([u8_images[0], floats[1:3]]), pipe(u8_images[:3]))


def test_a_static_batch_pads_uint8_groups(pkg_static, u8_images):
    with mesc.load(pkg_static) as pipe, pytest.warns(UserWarning, match="static batch"):
        _same(pipe(pipe.host_normalize(u8_images[:3])), pipe(u8_images[:3]))


def test_a_package_without_entry_gives_the_same_results(pkg_old, pkg_graph, u8_images):
    """Every package written before entries: uint8 normalised on the host, same results."""
    with mesc.load(pkg_old) as old, mesc.load(pkg_graph) as new:
        assert old.entry is None and old.pkg.input.normalized_on == "host"
        x, _ = old.prepare(u8_images)
        assert x.dtype == np.float32 and x.shape == (8, *SHAPE[1:])
        for p in (old, new):
            p.set_thresholds(0, th_img=0.5)
            p.set_thresholds(1, th_img=0.5)
        _same(old(u8_images), new(u8_images))
        _same([old(im) for im in u8_images[:3]], [new(im) for im in u8_images[:3]])
        assert "entry" not in old(u8_images[0]).timings["segments"]


def test_uint8_input_errors_name_the_layout(pkg_graph):
    with mesc.load(pkg_graph) as pipe:
        _, c, h, w = SHAPE
        with pytest.raises(mesc.runtime.InputError, match=r"takes 3 channels, got 64 \(shape \(2, 3, 32, 64\) read as N x H x W x C"):
            pipe(np.zeros((2, c, h, w), np.uint8))
        with pytest.raises(mesc.runtime.InputError, match="the batch is empty"):
            pipe(np.zeros((0, h, w, c), np.uint8))
