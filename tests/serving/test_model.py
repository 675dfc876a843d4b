"""The served model's callable against the pipeline in process, without a server."""

import types

import numpy as np
import pytest

import mesc
from mesc.serving.model import ServedPipeline
from mesc.serving.requests import CONFIDENCES, EXIT, EXIT_NAME, IMAGES, LABELS, RequestError


def _req(images, **params):
    return types.SimpleNamespace(data={IMAGES: images}, parameters=params)


def _check(out, results, exits):
    assert out[LABELS].dtype == np.int32 and out[EXIT].shape == (len(results), 1)
    for j, r in enumerate(results):
        np.testing.assert_array_equal(out[LABELS][j], r.labels)
        assert out[EXIT][j, 0] == r.exit_index and out[EXIT_NAME][j, 0] == r.exit.encode()
        for k, name in enumerate(exits):
            c = r.confidences.get(name)
            if c is None:
                assert np.isnan(out[CONFIDENCES][j, k])
            else:
                assert out[CONFIDENCES][j, k] == pytest.approx(c, rel=1e-6)


def test_a_batch_of_requests_answers_as_the_pipeline(served_pkg, uint8_images):
    with mesc.load(served_pkg) as pipe:
        for k in pipe.exit_names:
            pipe.set_thresholds(k, th_pix=0.5, th_img=0.5)
        want = pipe(uint8_images)
        served = ServedPipeline(pipe)
        out = served([_req(uint8_images[:2]), _req(uint8_images[2:])])
        _check(out[0], want[:2], pipe.exit_names)
        _check(out[1], want[2:], pipe.exit_names)


def test_overrides_run_apart_and_leave_the_package_settings(served_pkg, uint8_images):
    with mesc.load(served_pkg) as pipe:
        served = ServedPipeline(pipe)
        before = {k: pipe.thresholds(k) for k in pipe.exit_names}
        out = served([_req(uint8_images[:3], exit="exit1"), _req(uint8_images[3:], th_img=0.0),
                      _req(uint8_images[:2])])
        assert (out[0][EXIT] == 1).all()
        assert (out[1][EXIT] == 0).all()  # th_img 0: every image leaves at the first exit
        assert {k: pipe.thresholds(k) for k in pipe.exit_names} == before
        _check(out[0], pipe(uint8_images[:3], exit="exit1"), pipe.exit_names)
        _check(out[2], pipe(uint8_images[:2]), pipe.exit_names)


def test_one_bad_request_names_itself_and_runs_nothing(served_pkg, uint8_images):
    with mesc.load(served_pkg) as pipe:
        served = ServedPipeline(pipe)
        with pytest.raises(RequestError, match=r"request 1: parameter 'th_pix'"):
            served([_req(uint8_images[:1]), _req(uint8_images[:1], th_pix=2)])
        assert served([_req(uint8_images[:1])])[0][LABELS].shape[0] == 1  # still serving
