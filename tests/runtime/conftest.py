"""Packages built once per session from the toy net: host policy (no in-graph policy),
in-graph policy, static batch."""

import numpy as np
import pytest
from exported import export_toy
from toy_data import SHAPE


def _export(out, **kw):
    # small strides keep the edge band narrower than the 32x64 image
    return export_toy("three_exits", out, input_shape=SHAPE, strides=[2, 4, 4], **kw)


@pytest.fixture(scope="session")
def model():
    pytest.importorskip("torch")
    from toys import three_exits

    return three_exits()


@pytest.fixture(scope="session")
def pkg_host(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("pkgs") / "host", dynamic_batch=True, policy=None)


@pytest.fixture(scope="session")
def pkg_graph(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("pkgs") / "graph", dynamic_batch=True, policy="top1")


@pytest.fixture(scope="session")
def pkg_static(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("pkgs") / "static", dynamic_batch=False, policy=None)


@pytest.fixture(params=["host", "graph"])
def pkg(request):
    return request.getfixturevalue(f"pkg_{request.param}")


@pytest.fixture(scope="session")
def images():
    """Eight normalised images at input scales from timid to bold (th_pix 0.5 spreads them
    over the three exits)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    scales = np.geomspace(1.0, 30.0, 8).astype(np.float32)
    return x * scales[:, None, None, None]

