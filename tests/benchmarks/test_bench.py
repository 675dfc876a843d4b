"""mesc bench: the timing harness reports what it claims (warm-up excluded, percentiles right,
per-exit figures consistent with per-segment ones), the monolithic baseline computes what the
chain computes, JSON/plot/--record outputs load, and calibrate costs exits with the recording.
No test asserts a speed."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from exported import export_toy, has_torch

from mesc.benchmarks import harness
from mesc.benchmarks.bench import BenchOptions, bench, format_result, latency_key, record_latency, tensor_bytes
from mesc.errors import MescError
from mesc.package import MANIFEST, Package
from mesc.package.schema import Tensor

FAST = dict(warmup=1, iters=3)


# harness --------------------------------------------------------------------------------------

class FakeClock:
    """Time moves only when the timed callable says so."""

    def __init__(self):
        self.now = 0.0

    def start(self):
        return self.now

    def stop(self, token):
        return self.now - token


def test_warmup_is_excluded():
    clock = FakeClock()
    durations = iter([500.0, 300.0, 1.0, 2.0, 3.0])  # the first (warm-up) calls are slow

    def fn():
        clock.now += next(durations)

    assert harness.measure(fn, warmup=2, iters=3, clock=clock) == [1.0, 2.0, 3.0]


def test_interleave_rotates_and_keeps_parts_after_warmup():
    clock, order = FakeClock(), []

    def variant(name, ms):
        def run():
            order.append(name)
            clock.now += ms
            return {"part": ms / 2}
        return run

    out = harness.interleave({"a": variant("a", 4.0), "b": variant("b", 6.0)}, warmup=1, iters=3, clock=clock)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]  # a rotating order evens out drift
    assert out["a"]["total"] == [4.0] * 3 and out["b"]["total"] == [6.0] * 3
    assert out["a"]["parts"] == {"part": [2.0] * 3}


def test_summary_matches_numpy():
    x = np.random.default_rng(3).gamma(2.0, 3.0, size=37)
    s = harness.summarize(x)
    assert s["n"] == 37
    assert s["median"] == pytest.approx(np.median(x))
    assert s["p90"] == pytest.approx(np.percentile(x, 90))
    assert s["p99"] == pytest.approx(np.percentile(x, 99))
    assert s["std"] == pytest.approx(np.std(x, ddof=1))
    assert s["iqr"] == pytest.approx(np.percentile(x, 75) - np.percentile(x, 25))
    assert (s["min"], s["max"]) == (x.min(), x.max())
    assert harness.summarize([2.5])["std"] == 0.0


def test_sizes_and_keys():
    assert tensor_bytes(Tensor("x", ("batch", 3, 4, 5), "float32"), 2) == 2 * 3 * 4 * 5 * 4
    assert tensor_bytes(Tensor("th", (1,), "int32"), 7) == 4
    assert latency_key("onnxruntime", "cpu") == "onnxruntime/cpu"
    assert latency_key("tensorrt", "cuda:0", "host", "fp16") == "tensorrt/cuda:0/host/fp16"
    assert latency_key("onnxruntime", "cuda:0", None, "fp16") == "onnxruntime/cuda:0/fp16"


def test_environment_names_the_machine():
    from mesc.runtime.devices import parse_device

    env = harness.environment(parse_device("cpu"), threads=2)
    assert env["device"] and env["cpu"] and env["threads"] == 2 and env["onnxruntime"]


# a tiny exported package ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pkg_root(tmp_path_factory):
    # by file path, so the eager baseline can rebuild the source model from the manifest
    return export_toy("skipnet", tmp_path_factory.mktemp("bench") / "skipnet", by_path=True,
                      input_shape=(1, 3, 32, 64), verify=False)


@pytest.fixture(scope="module")
def result(pkg_root):
    return bench(pkg_root, BenchOptions(**FAST), progress=False, say=lambda m: None)


def test_per_exit_figures_are_consistent_with_per_segment_ones(pkg_root, result):
    pkg = Package.load(pkg_root)
    seg = {s["name"]: s for s in result["segments"]}
    assert list(seg) == [s.name for s in pkg.segments]
    for s in result["segments"]:
        assert s["ms"]["n"] == FAST["iters"] and s["ms"]["median"] > 0
        assert s["activation_bytes"] == sum(tensor_bytes(t, 1) for t in pkg.segment(s["name"]).outputs)
        assert s["file_bytes"] == (pkg_root / pkg.segment(s["name"]).file).stat().st_size
    final = result["exits"][-1]
    for e in result["exits"]:
        names = [s.name for s in pkg.segments_until(e["name"])]
        assert e["segments"] == names
        assert e["ms"]["n"] == FAST["iters"]
        assert e["segment_sum_ms"] == pytest.approx(sum(seg[n]["ms"]["median"] for n in names))
        assert e["exit_over_segment_sum"] == pytest.approx(e["ms"]["median"] / e["segment_sum_ms"])
        assert e["flops"] == sum(pkg.segment(n).flops for n in names)
        lat, fl = e["ms"]["median"] / final["ms"]["median"], e["flops"] / final["flops"]
        assert e["efficiency"] == pytest.approx(lat / fl)
        d = e["decision"]
        assert d["bytes"] == 4 and d["ms"]["n"] == FAST["iters"]  # in-graph policy: one float32
        assert d["share_of_head"] == pytest.approx(d["ms"]["median"] / seg[pkg.exit(e["name"]).segment]["ms"]["median"])
    assert final["efficiency"] == pytest.approx(1.0)
    b = result["baselines"]
    assert b["monolithic"]["chain_over_mono"] == pytest.approx(final["ms"]["median"] / b["monolithic"]["ms"]["median"])
    if has_torch():
        assert b["eager"]["eager_over_mesc"] == pytest.approx(b["eager"]["ms"]["median"] / b["never_exit"]["ms"]["median"])
        fwd = b["eager_forward"]
        assert fwd["ms"]["n"] == FAST["iters"]
        assert fwd["eager_over_final"] == pytest.approx(fwd["ms"]["median"] / final["ms"]["median"])
    else:  # a device without torch: the eager baselines say why they did not run
        assert "torch" in b["eager"]["skipped"] and "eager_forward" not in b
    assert set(result["latency_ms"]) == set(seg)
    # issue 25's overhead figures, from the same medians
    o = result["overhead"]
    # the monolithic baseline runs the same entry segment before its one graph: the chain's extra
    # segments are the final path's segments but the entry
    assert final["segments"][0] == "entry" and b["monolithic"]["ms"]["n"] == FAST["iters"]
    n = len(final["segments"]) - 1
    assert o["per_segment_ms"] == pytest.approx((final["ms"]["median"] - b["monolithic"]["ms"]["median"]) / (n - 1))
    for e in result["exits"]:
        assert o["outside_segments_ms"][e["name"]] == pytest.approx(e["ms"]["median"] - e["segment_sum_ms"])
        assert o["confidence_read_ms"][e["name"]] == e["decision"]["ms"]["median"]
    assert o["path"] == {"backend": "onnxruntime", "io": "direct", "cuda_graphs": "off", "graph_fallbacks": {}}
    assert "overhead    per extra segment" in format_result(result) and "direct I/O, CUDA graphs off" in \
        format_result(result)
    env = result["environment"]
    assert env["precision"] == "fp32" and env["threads"] >= 1 and env["device"]


def test_monolithic_graph_computes_what_the_chain_computes(pkg_root, tmp_path):
    import mesc
    from mesc.benchmarks.baselines import monolithic_package
    from mesc.runtime import Pipeline, make_runner

    pkg = Package.load(pkg_root)
    mono = monolithic_package(pkg, tmp_path / "mono")
    # the same entry segment, then the final exit's path as one graph: both take the same uint8 images
    assert [s.name for s in mono.segments] == ["entry", "monolithic"] and mono.exits[0].name == pkg.exits[-1].name
    assert mono.input.entry == pkg.input.entry and mono.files["onnx/entry.onnx"] == pkg.files["onnx/entry.onnx"]
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 64)).astype(np.float32)
    u8 = np.random.default_rng(1).integers(0, 256, (1, 32, 64, 3), dtype=np.uint8)
    with mesc.load(pkg_root) as chain, Pipeline(mono, make_runner(mono, "onnxruntime", "cpu")) as one:
        for inp in (x, u8):
            a, b = chain(inp, exit=len(chain.exit_names) - 1, logits=True)[0], one(inp, exit=0, logits=True)[0]
            np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
            assert (a.labels == b.labels).all()
        assert list(one(u8)[0].timings["segments"]) == ["entry", "monolithic"]


def test_eager_forward_returns_the_final_exit_labels_mesc_returns(pkg_root):
    pytest.importorskip("torch")
    import mesc
    from mesc.benchmarks.baselines import eager_forward, source_model

    pkg = Package.load(pkg_root)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 64)).astype(np.float32)
    labels = eager_forward(source_model(pkg), pkg, 1)(x)
    with mesc.load(pkg_root) as chain:
        ref = chain(x, exit=len(chain.exit_names) - 1)[0].labels
    assert labels.shape == (1, *ref.shape) and (labels[0] == ref).mean() > 0.999


def test_eager_is_skipped_with_a_reason_when_the_source_cannot_be_rebuilt(tmp_path):
    root = export_toy("skipnet", tmp_path / "p", verify=False)  # a model object: no source to rebuild
    r = bench(root, BenchOptions(warmup=0, iters=1, baselines=("eager",)), progress=False, say=lambda m: None)
    assert "cannot be rebuilt" in r["baselines"]["eager"]["skipped"]
    assert "monolithic" not in r["baselines"]


# outputs: JSON, plot, --record -------------------------------------------------------------------

def test_cli_writes_json_plot_and_records_what_calibrate_reads(pkg_root, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from mesc.calibration.exits.search import costs_from_package
    from mesc.cli import cli

    flops_costs = costs_from_package(Package.load(pkg_root))
    assert flops_costs.source == "flops"
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(cli, ["bench", str(pkg_root), "--warmup", "1", "--iters", "2", "--baseline", "none",
                                   "--json", str(out_json), "--plot", str(out_png), "--record"])
    assert res.exit_code == 0, res.output
    assert "exit" in res.output and "recorded" in res.output
    r = json.loads(out_json.read_text())
    assert [e["name"] for e in r["exits"]] == [e.name for e in Package.load(pkg_root).exits]
    with Image.open(out_png) as im:
        assert im.format == "PNG" and im.size[0] > 100

    pkg = Package.load(pkg_root)  # checksums still hold: only the manifest changed
    recorded = pkg.manifest["latency"]["onnxruntime/cpu"]
    assert recorded == r["latency_ms"] and set(recorded) == {s.name for s in pkg.segments}
    assert not [p for p in os.listdir(pkg_root) if p.startswith(f".{MANIFEST}.")]  # no temp file left
    costs = costs_from_package(pkg)
    assert costs.source == "latency:onnxruntime/cpu" and costs.unit == "ms"
    for i, ex in enumerate(pkg.exits):  # the head's recorded latency, not its FLOPs
        assert costs.head[i] == pytest.approx(recorded[ex.segment])
    assert costs.budgeted(len(pkg.exits) - 1) == pytest.approx(
        sum(recorded[s.name] for s in pkg.segments_until(pkg.exits[-1].name)))


def test_record_is_atomic(pkg_root, result, monkeypatch):
    before = (pkg_root / MANIFEST).read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("mesc.package.staging.os.replace", fail)
    with pytest.raises(OSError):
        record_latency(pkg_root, dict(result, latency_key="test/interrupted"))
    assert (pkg_root / MANIFEST).read_bytes() == before
    assert not [p for p in os.listdir(pkg_root) if p.startswith(f".{MANIFEST}.")]


# bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opts, message", [
    (dict(backend="tvm"), "unknown backend"),
    (dict(backend="tensorrt", device="cuda:0", target="host"), "no TensorRT engines"),
    (dict(backend="tensorrt", device="cuda:0", target="pascal-9000"), "unknown target"),
    (dict(target="host"), "select TensorRT engines"),
    (dict(batch=2), "larger than the package's static batch of 1"),
    (dict(baselines=("tflite",)), "unknown baseline"),
    (dict(spin="always"), "--spin must be one of run, off, on, got 'always'"),
])
def test_bad_requests_are_refused_clearly(pkg_root, opts, message):
    with pytest.raises(MescError, match=message):
        bench(pkg_root, BenchOptions(**FAST, **opts), progress=False, say=lambda m: None)


def test_prepared_precision_on_onnxruntime(pkg_root, tmp_path):
    """FP16 graphs from 'mesc prepare' benched on onnxruntime, the monolithic baseline composed
    from the same FP16 graphs; an unprepared precision names the command."""
    import shutil

    from mesc.calibration.precision import prepare

    with pytest.raises(MescError, match=f"run 'mesc prepare {pkg_root} --precision fp16' first"):
        bench(pkg_root, BenchOptions(**FAST, precision="fp16"), progress=False, say=lambda m: None)
    root = tmp_path / "pkg"
    shutil.copytree(pkg_root, root)
    prepare(root, ("fp16",))
    res = bench(root, BenchOptions(**FAST, precision="fp16", baselines=("monolithic",)), progress=False,
                say=lambda m: None)
    assert res["precision"] == "fp16" and res["latency_key"] == "onnxruntime/cpu/fp16"
    assert "skipped" not in res["baselines"]["monolithic"], res["baselines"]["monolithic"]


def test_data_without_readable_images(pkg_root, tmp_path):
    from mesc.cli import cli

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    res = CliRunner().invoke(cli, ["bench", str(pkg_root), "--iters", "1", "--warmup", "0", "--baseline", "none",
                                   "--data", str(tmp_path / "imgs")])
    assert res.exit_code == 2 and "no readable 64x32 images" in res.output


def _noise_images(folder, count):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def test_data_run_reports_exit_distribution(pkg_root, tmp_path):
    r = bench(pkg_root, BenchOptions(warmup=1, iters=1, baselines=(), data=_noise_images(tmp_path / "imgs", 4)),
              progress=False, say=lambda m: None)
    d = r["data"]
    assert d["images"] == 4 and sum(d["exits"].values()) == 4
    assert sum(d["exit_fraction"].values()) == pytest.approx(1.0)
    assert d["input_dependent_ms"]["n"] == d["final_only_ms"]["n"] == 4


def test_a_disabled_exit_is_timed_marked_and_skipped_by_the_input_dependent_run(pkg_root, tmp_path):
    """What ``mesc calibrate --write`` leaves: one exit disabled (once a KeyError on its head)."""
    import shutil

    from mesc.benchmarks.bench import format_result

    root = tmp_path / "off"
    shutil.copytree(pkg_root, root)
    pkg = Package.load(root)
    pkg.set_enabled(0, False)
    pkg.set_policy(0, th_img=0.0)  # would take every image, were it enabled
    pkg.save()
    first = pkg.exits[0]
    data = _noise_images(tmp_path / "imgs", 3)
    r = bench(root, BenchOptions(warmup=0, iters=2, baselines=(), data=data), progress=False, say=lambda m: None)
    assert set(r["latency_ms"]) == {s.name for s in pkg.segments}  # --record keeps every cost
    assert r["latency_ms"][first.segment] > 0
    assert [e["enabled"] for e in r["exits"]] == [False] + [True] * (len(pkg.exits) - 1)
    assert r["data"]["exits"][first.name] == 0 and r["data"]["images"] == 3
    text = format_result(r)
    assert f"{first.name} (off)" in text and "disabled by calibration" in text
    record_latency(root, r)
    assert Package.load(root).exits[0].enabled is False  # recording leaves the flags alone


def test_cli_checks_json_and_plot_before_timing(pkg_root, tmp_path, monkeypatch):
    from mesc.benchmarks import bench as bench_mod
    from mesc.cli import cli

    def no_timing(*a, **k):
        raise AssertionError("timed before the outputs were checked")

    monkeypatch.setattr(bench_mod, "bench", no_timing)
    data = tmp_path / "imgs"
    data.mkdir()
    existing = tmp_path / "old.json"
    existing.write_text("old")
    (tmp_path / "file").write_text("")
    for args, message in ((["--json", pkg_root / "b.json", "--force"], "lies inside the input PACKAGE"),
                          (["--data", data, "--plot", data / "b.png"], "lies inside the input --data"),
                          (["--json", existing], "already exists; pass --force"),
                          (["--plot", tmp_path / "file" / "b.png"], "is not a directory")):
        res = CliRunner().invoke(cli, ["bench", str(pkg_root), *map(str, args)])
        assert res.exit_code == 2 and message in res.output, res.output
    assert existing.read_text() == "old" and not (pkg_root / "b.json").exists() and not list(data.iterdir())
