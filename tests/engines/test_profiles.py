"""Optimisation profiles from the package, through mesc's builder code on CPU: the batch range,
the per-input shapes, and the polygraphy Profile and CreateConfig keywords made from them."""

from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from exported import export_toy

from mesc.cli import cli
from mesc.engines.profiles import batch_range, segment_shapes
from mesc.engines.targets import plan_build
from mesc.targets import Target, get_target
from mesc.errors import MescError
from mesc.package.schema import Input, Segment, Tensor


DYNAMIC = Input("image", ("batch", 3, 32, 64), "float32", dynamic_batch=True)
STATIC = Input("image", (2, 3, 32, 64), "float32", dynamic_batch=False)


def _segment(name, inputs):
    return Segment(name, "head", f"onnx/{name}.onnx", tuple(Tensor(n, s, "float32") for n, s in inputs), ())


SEGMENT = _segment("head0", [("feat", ("batch", 16, 8, 16)), ("exit0_th_pix", ())])


def test_batch_range_from_the_package_and_target():
    host = get_target("host")
    assert batch_range(DYNAMIC, host) == (1, 8, 8)
    assert batch_range(DYNAMIC, host, max_batch=16) == (1, 16, 16)
    assert batch_range(DYNAMIC, Target("small", None, max_batch=4)) == (1, 4, 4)  # per-target default
    assert batch_range(DYNAMIC, get_target("orin"), dla=True) == (1, 1, 1)  # DLA: static shapes
    assert batch_range(DYNAMIC, get_target("orin"), max_batch=4, dla=True) == (4, 4, 4)
    assert batch_range(STATIC, host) is None
    with pytest.raises(MescError, match="static batch of 2 .*--dynamic-batch"):
        batch_range(STATIC, host, max_batch=4)
    with pytest.raises(MescError, match="--max-batch 0"):
        batch_range(DYNAMIC, host, max_batch=0)


def test_segment_shapes_per_input():
    assert segment_shapes(SEGMENT, (1, 8, 8)) == {
        "feat": ([1, 16, 8, 16], [8, 16, 8, 16], [8, 16, 8, 16])}
    assert segment_shapes(SEGMENT, None) == {}
    bad = _segment("c", [("x", ("batch", 3, "h", 64))])
    with pytest.raises(MescError, match="only the first"):
        segment_shapes(bad, (1, 8, 8))


FAKE_TRT = SimpleNamespace(MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
                           ProfilingVerbosity=SimpleNamespace(DETAILED="DETAILED"))


def test_create_config_gets_the_profile_and_tf32(monkeypatch):
    pytest.importorskip("polygraphy")
    import polygraphy.backend.trt as ptrt

    from mesc.runtime.backends.trt import compat

    recorded = {}
    monkeypatch.setattr(compat, "tensorrt", lambda purpose=None: FAKE_TRT)
    monkeypatch.setattr(ptrt, "CreateConfig", lambda **kw: recorded.update(kw) or "config")
    plan = plan_build("host", "fp32", "10.3")
    assert compat._config(plan, segment_shapes(SEGMENT, (1, 8, 8)), None, "t.cache") == "config"
    (profile,) = recorded["profiles"]
    assert isinstance(profile, ptrt.Profile) and list(profile.keys()) == ["feat"]
    assert (tuple(profile["feat"].min), tuple(profile["feat"].opt), tuple(profile["feat"].max)) == (
        (1, 16, 8, 16), (8, 16, 8, 16), (8, 16, 8, 16))
    assert recorded["tf32"] is True and recorded["load_timing_cache"] == "t.cache"
    assert recorded["memory_pool_limits"] == {"WORKSPACE": 4096 << 20}
    # static shapes: polygraphy's default profile; no TF32 when asked not to, nor for fp16
    compat._config(plan_build("host", "fp32", "10.3", tf32=False), {}, None, None)
    assert recorded["profiles"] is None and recorded["tf32"] is False
    compat._config(plan_build("host", "fp16", "8.6.1"), {}, None, None)
    assert recorded["tf32"] is False and recorded["fp16"] is True


def test_polygraphy_floor_per_tensorrt_line():
    from mesc.runtime.backends.trt import compat

    assert compat.polygraphy_floor("8.5.2.2") == (0, 48, 1)
    assert compat.polygraphy_floor("10.3.0") == (0, 49, 6)
    assert compat.polygraphy_floor("11.4.1") == (0, 50, 3)
    compat.check_polygraphy("10.3.0", "0.49.6")
    with pytest.raises(MescError, match=r"TensorRT 11.1.0 needs polygraphy >= 0.50.3, this machine has 0.49.27: "
                                        r"pip install 'polygraphy>=0.50.3'"):
        compat.check_polygraphy("11.1.0", "0.49.27")
    with pytest.raises(MescError, match="polygraphy >= 0.49.6"):
        compat.check_polygraphy("10.0.1", "0.48.1")


@pytest.fixture(scope="module")
def static_pkg(tmp_path_factory):
    return export_toy("skipnet", tmp_path_factory.mktemp("p") / "skipnet", policy=None, verify=False)


def test_max_batch_on_a_static_package_is_refused_before_tensorrt_loads(static_pkg):
    res = CliRunner().invoke(cli, ["build", str(static_pkg), "--max-batch", "4"])
    assert res.exit_code == 2 and "--max-batch: the package has a static batch" in res.output, res.output
