"""One pipeline, several threads: calls take turns (the runner's buffers are fixed per segment
and batch size), so each thread gets its own images' results; the stream path over the recording
CUDA stand-in shares those buffers, which is where a missing lock would mix results."""

import threading

import numpy as np
import pytest

import mesc
from mesc.errors import MescError
from mesc.package import Package
from mesc.runtime import BackendError, cuda
from mesc.runtime.backends.onnxrt import OrtRunner, SessionsFromPackage
from mesc.runtime.devices import Device
from mesc.runtime.pipeline import Pipeline
from cuda_fakes import RecordingRuntime


def test_two_threads_on_one_pipeline_get_their_own_results(pkg_graph, images, monkeypatch):
    monkeypatch.setattr(cuda, "_RUNTIME", RecordingRuntime())
    cpu = Device("cpu")
    pkg = Package.load(pkg_graph)
    with mesc.load(pkg_graph) as ref, Pipeline(pkg, OrtRunner(SessionsFromPackage(pkg, cpu), cpu, io="stream")) as pipe:
        expected = {i: ref(images[i:i + 1])[0] for i in range(len(images))}
        errors = []

        def work(order):
            try:
                for _ in range(3):
                    for i in order:
                        got = pipe(images[i:i + 1])[0]
                        assert got.exit == expected[i].exit, i
                        np.testing.assert_array_equal(got.labels, expected[i].labels)
            except AssertionError as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(o,)) for o in (range(8), range(7, -1, -1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]


def test_an_open_anytime_generator_refuses_a_call_from_its_own_thread(pkg_graph, images):
    with mesc.load(pkg_graph) as pipe:
        steps = pipe.anytime(images[:2])
        next(steps)
        with pytest.raises(MescError, match="finish or close it first"):
            pipe(images[:1])
        steps.close()  # closing releases the pipeline
        assert len(pipe(images[:2])) == 2


def test_load_checks_the_device_options(pkg_graph):
    with pytest.raises(BackendError, match="cuda_graphs must be True or False"):
        mesc.load(pkg_graph, cuda_graphs="off")
    with pytest.raises(BackendError, match="stream must be a CUDA stream handle"):
        mesc.load(pkg_graph, stream=1234)  # on the CPU there is no stream to share
    with mesc.load(pkg_graph, cuda_graphs=False) as pipe:
        assert pipe.runner.path()["cuda_graphs"] == "off"
