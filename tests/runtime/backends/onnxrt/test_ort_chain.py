"""The ONNX Runtime CPU chain that export verification and calibration share."""

import numpy as np

import mesc
from mesc.package import Package
from mesc.runtime.backends.onnxrt.chain import OrtChain, run_chain


def test_run_chain_is_the_runtime(pkg_graph, images):
    pkg = Package.load(pkg_graph)
    env = run_chain(pkg, images[:2])
    assert {o.name for s in pkg.segments for o in s.outputs} <= set(env)
    with mesc.load(pkg_graph) as pipe:
        np.testing.assert_array_equal(env["exit1_labels"], np.stack([r.labels for r in pipe(images[:2], exit=1)]))


def test_chain_keeps_its_sessions_and_filters_tensors(pkg_graph, images):
    pkg = Package.load(pkg_graph)
    with OrtChain(pkg, fake_quant=True) as chain:
        sessions = dict(chain.pipe.runner.sessions)
        first = chain.run(images[:2], keep={"exit1_labels"})
        again = chain.run(images[:2])
        assert chain.pipe.runner.sessions == sessions
    assert set(first) == {"exit1_labels"}
    np.testing.assert_array_equal(first["exit1_labels"], again["exit1_labels"])

