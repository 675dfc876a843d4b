"""The entry segment's graph against the host normalisation it replaces: bit for bit, and the
export's check that says so fails on a graph that normalises in another order."""

import numpy as np
import onnxruntime as ort
import pytest

from mesc.errors import ExportError
from mesc.exporters import entry as entry_mod
from mesc.exporters.entry import ENTRY_INPUT, entry_model
from mesc.runtime.images import normalize

NORMALIZATIONS = [
    {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},  # ImageNet, mesc's default
    {"scale": 255.0, "mean": [0.5], "std": [0.5]},  # one value for every channel
    {"scale": 1.0, "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},  # 0..255 statistics
    None,  # none recorded: scale 255, mean 0, std 1
]


def _run(model, images):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {ENTRY_INPUT: images})[0]


def _every_value(n=4, h=16, w=32, c=3):
    """uint8 images that hold every value 0..255 in every channel, plus random ones."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    x[0].reshape(-1, c)[:256] = np.arange(256, dtype=np.uint8)[:, None]
    return x


@pytest.mark.parametrize("norm", NORMALIZATIONS)
@pytest.mark.parametrize("dynamic", [True, False])
def test_entry_is_bit_identical_to_host_normalisation(norm, dynamic):
    x = _every_value()
    model = entry_model("image", (4, 3, 16, 32), norm, 17, dynamic)
    got = _run(model, x)
    want = np.stack([normalize(im, norm) for im in x])
    assert got.dtype == np.float32 and got.shape == (4, 3, 16, 32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # the bits, -0.0 included


def test_entry_takes_any_batch_when_dynamic():
    model = entry_model("image", (1, 3, 16, 32), None, 17, True)
    for n in (1, 3):
        assert _run(model, _every_value(n)).shape == (n, 3, 16, 32)


def _reordered(input_name, shape, normalization, opset, dynamic_batch):
    """The entry with its normalisation written another (algebraically equal) way:
    x * (1 / scale) instead of x / scale."""
    from onnx import numpy_helper

    model = entry_model(input_name, shape, normalization, opset, dynamic_batch)
    node = next(n for n in model.graph.node if n.name == "entry_scale")
    node.op_type = "Mul"
    init = next(i for i in model.graph.initializer if i.name == "entry_scale")
    init.CopyFrom(numpy_helper.from_array(np.float32(1) / numpy_helper.to_array(init), "entry_scale"))
    return model


def test_a_reordered_entry_is_not_bit_identical():
    """Guards the test above: multiplying by the reciprocal rounds differently, and the
    comparison sees it."""
    x = _every_value()
    norm = NORMALIZATIONS[0]
    got = _run(_reordered("image", (4, 3, 16, 32), norm, 17, True), x)
    want = np.stack([normalize(im, norm) for im in x])
    assert not np.array_equal(got, want)


def test_the_exports_check_refuses_a_reordered_entry(tmp_path, monkeypatch):
    """mesc export verifies the entry it wrote: one that normalises otherwise is not written."""
    import toys

    from mesc.exporters.export import ExportOptions, export

    monkeypatch.setattr(entry_mod, "entry_model", _reordered)
    with pytest.raises(ExportError, match="the entry segment's normalisation differs from the host's"):
        export(toys.skipnet(), tmp_path / "pkg", options=ExportOptions(policy=None))
    assert not (tmp_path / "pkg").exists()


def test_host_normalize_writes_no_entry(tmp_path):
    import toys

    from mesc.exporters.export import ExportOptions, export

    pkg = export(toys.skipnet(), tmp_path / "pkg", options=ExportOptions(policy=None, host_normalize=True))
    assert pkg.entry is None and pkg.input.normalized_on == "host" and "entry" not in pkg.manifest["input"]
    assert [s.kind for s in pkg.segments][0] == "chunk"
    with_entry = export(toys.skipnet(), tmp_path / "entry", options=ExportOptions(policy=None))
    assert with_entry.input.normalized_on == "device"
    assert with_entry.manifest["input"]["entry"] == {"segment": "entry", "input": "image_uint8", "layout": "NHWC"}
    assert [s.name for s in with_entry.segments] == ["entry"] + [s.name for s in pkg.segments]
    e = with_entry.entry
    assert e.kind == "entry" and e.exit is None
    assert [(t.name, t.dtype, t.shape) for t in e.inputs] == [("image_uint8", "uint8", (1, 32, 64, 3))]
    assert [(t.name, t.dtype, t.shape) for t in e.outputs] == [("image", "float32", (1, 3, 32, 64))]


# the demo and the reference models: uint8 through the entry against host-normalised float ---------

def _uint8_equals_float(pkg_root, images, th_pix=None):
    """Labels and confidences from uint8 ``images`` (the entry) equal those from the same images
    normalised on the host, for the whole batch (compacting where the exits spread) and image by
    image; the entry's output is the host's float batch bit for bit. Returns the exits taken."""
    import mesc
    from runtime_checks import assert_same_results, spread_thresholds

    with mesc.load(pkg_root) as pipe:
        floats = pipe.host_normalize(images)
        np.testing.assert_array_equal(pipe.tensors(images)[pipe.input_name], floats)
        spread_thresholds(pipe, floats, th_pix)
        u8 = pipe(images)
        assert_same_results(pipe(floats), u8)
        assert_same_results([pipe(x[None])[0] for x in floats], [pipe(im) for im in images])
        assert_same_results(pipe(floats, exit=len(pipe.exit_names) - 1), pipe(images, exit=len(pipe.exit_names) - 1))
        return {r.exit for r in u8}


def test_the_demo_gives_the_same_results_from_uint8(tmp_path):
    from mesc.exporters.export import ExportOptions, export
    from mesc.selftest.subject import scenes

    pkg = export(None, tmp_path / "demo", options=ExportOptions(dynamic_batch=True))  # verified: the entry too
    images = np.stack(scenes(pkg.input.shape, 8, 3))  # the demo's scenes, easy to hard
    assert len(_uint8_equals_float(pkg.root, images)) >= 2  # the batch compacted


@pytest.mark.parametrize("name", ["drn50-fcn", "drn50-deeplab", "mbv2-fcn", "mbv2-deeplab", "hrnet18", "unet-skip"])
def test_reference_models_give_the_same_results_from_uint8(tmp_path, name):
    import torch

    import mesc
    from mesc.exporters.export import ExportOptions, export
    from mesc.models import create
    from mesc.selftest.subject import random_images
    from test_reference_models import NARROW

    torch.manual_seed(0)
    model = create(name, num_classes=5, **NARROW[name])
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(input_shape=(1, 3, 64, 128), dynamic_batch=True,
                                                                verify=False))
    images = np.stack(random_images(pkg.input.shape, 6, seed=4))
    # random weights are sure of no pixel: th_pix at the median top-1 probability of exit 0 makes
    # its confidences differ between images (and any difference in the input would show near it)
    with mesc.load(pkg.root) as pipe:
        logits = pipe.tensors(images)[pkg.exits[0].logits]
    e = np.exp(logits - logits.max(1, keepdims=True))
    th_pix = float(np.median((e / e.sum(1, keepdims=True)).max(1)))
    assert len(_uint8_equals_float(pkg.root, images, th_pix=th_pix)) >= 2  # the batch compacted
