"""On a machine with TensorRT and a GPU: build the toy package's engines, load them, and compare
each segment with ONNX Runtime through polygraphy's Comparator."""

from pathlib import Path

import numpy as np
import pytest

from exported import export_toy

from mesc.package import Package

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return export_toy("skipnet", tmp_path_factory.mktemp("trt") / "skipnet", policy="top1")


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_build_load_and_compare_with_onnxruntime(pkg, precision, atol):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import TrtRunner
    from polygraphy.comparator import CompareFunc, Comparator

    from mesc.calibration.precision.feeds import segment_inputs
    from mesc.engines.build import build
    from mesc.runtime.backends.trt.compat import load_engine

    entry = build(pkg, "host", precision)
    p = Package.load(pkg)  # engines are checksummed in the manifest
    assert p.manifest["engines"]["host"][precision]["segments"].keys() == {s.name for s in p.segments}
    x = np.random.default_rng(0).normal(size=p.input["shape"]).astype(np.float32)
    feeds = segment_inputs(p, [x])
    for seg in p.segments:
        meta = entry["segments"][seg.name]
        engine = load_engine(p.path(meta["file"]))
        runners = [TrtRunner(engine), OnnxrtRunner(SessionFromOnnx(str(p.path(seg.file))))]
        results = Comparator.run(runners, data_loader=[feeds[seg.name]])
        # the exit head casts ArgMax's labels to INT32 in the graph, so both runtimes give INT32
        # (CompareFunc.simple has no dtype switch in any polygraphy)
        ok = Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol))
        assert bool(ok), seg.name


def test_int8_explicit_build(pkg, tmp_path):
    from PIL import Image

    from mesc.engines.build import build

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    h, w = Package.load(pkg).input["shape"][2:]
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    entry = build(pkg, "host", "int8", calib_data=imgs)
    assert all(Path(pkg, s["file"]).is_file() for s in entry["segments"].values())


def test_dynamic_batch_engines_take_every_batch_up_to_max_batch(tmp_path):
    """Through mesc's own builder: a dynamic-batch package gets a 1..max_batch profile."""
    import mesc
    from mesc.engines.build import build

    out = export_toy("skipnet", tmp_path / "dyn", policy="top1", dynamic_batch=True)
    entry = build(out, "host", "fp32", max_batch=4)
    assert entry["batch"] == {"min": 1, "opt": 4, "max": 4}
    assert entry["timing_cache"].startswith("engines/host.trt")
    p = Package.load(out)
    x = np.random.default_rng(0).normal(size=(4, *p.input["shape"][1:])).astype(np.float32)
    with mesc.load(out, backend="onnxruntime") as ref, mesc.load(out, backend="tensorrt", device="cuda:0") as trt_:
        for n in (1, 3, 4):
            a, b = ref(x[:n]), trt_(x[:n])
            assert [r.exit for r in a] == [r.exit for r in b]
            assert all((ra.labels == rb.labels).mean() > 0.999 for ra, rb in zip(a, b))
        assert set(trt_.runner.segment_times() or {}) <= {s.name for s in p.segments}
