"""A stock `tritonserver` over the repository `mesc serve --model-repository` writes: the binary,
Python backend and stub that PyTriton's wheel bundles, on free loopback ports, with two models
(the demo exported with dynamic batch, and with static batch: max_batch_size 0). Over HTTP and
gRPC its answers match `mesc.load(...)` in process; a malformed request gets an error naming what
is wrong while the server keeps answering; SIGTERM stops it leaving no process behind.
`make test` runs this file in .venv-serve (see conftest.py)."""

import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from mesc.serving.local import ServerDidNotStart, bundled_tritonserver, session_processes, start_tritonserver

TRITON, WHY = bundled_tritonserver()
if TRITON is None:
    pytest.skip(WHY, allow_module_level=True)
pytest.importorskip("tritonclient", reason="tritonclient is not installed here: make test runs this file in .venv-serve")

import mesc  # noqa: E402
from mesc.serving.client import Client, ServerError  # noqa: E402

MODELS = ("demo", "demo-static")


def _write(package, repo, *options):
    res = subprocess.run([sys.executable, "-m", "mesc.cli", "serve", str(package), "--model-repository", str(repo),
                          *options], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.fixture(scope="module")
def packages(demo_dynamic, demo_static):
    return {"demo": demo_dynamic, "demo-static": demo_static}


@pytest.fixture(scope="module")
def server(packages, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton") / "models"
    _write(packages["demo"], repo, "--instances", "2", "--max-batch", "8")
    _write(packages["demo-static"], repo, "--max-batch", "4")
    work = repo.parent / "work"
    log = open(repo.parent / "tritonserver.log", "w+")
    local = start_tritonserver(repo, work, "demo", log=log, triton=TRITON)
    try:
        local.wait_ready(timeout_s=300, models=MODELS)
    except ServerDidNotStart as err:
        log.seek(0)
        pytest.fail(f"{err}:\n{log.read()[-4000:]}")
    except BaseException:
        local.stop(timeout_s=10)
        raise
    yield local, log
    local.stop(timeout_s=30)


@pytest.fixture(scope="module")
def scenes(packages):
    rng = np.random.default_rng(0)
    with mesc.load(packages["demo"]) as pipe:
        c, h, w = pipe.chw
    # smooth random fields with a few flat images: some leave early, some go deep
    base = rng.integers(0, 256, (4, h // 8, w // 8, c), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    base[:2] = base[:2, :1, :1]
    return np.ascontiguousarray(base)


def _png(image):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_match_the_pipeline_in_process(server, packages, scenes, model, protocol):
    local, _ = server
    with mesc.load(packages[model]) as pipe, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the static-batch package's note
        want = pipe(scenes)
        want_budgeted = pipe(scenes[:2], exit="exit1")
        exits = pipe.exit_names
    with Client(local.urls[protocol], model) as client:
        got = client.infer(scenes) + client.infer(scenes[:2], exit="exit1")
        got += client.infer(encoded=[_png(im) for im in scenes[:2]])
    assert len(got) == len(want) + 4
    assert {r.exit for r in got[:len(want)]} == {r.exit_index for r in want}
    for g, w in zip(got, want + want_budgeted + want[:2]):
        np.testing.assert_array_equal(g.labels, w.labels)
        assert (g.exit, g.exit_name) == (w.exit_index, w.exit)
        for k, name in enumerate(exits):
            c = w.confidences.get(name)
            assert np.isnan(g.confidences[k]) if c is None else g.confidences[k] == pytest.approx(c, rel=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_errors_and_the_server_keeps_answering(server, scenes, protocol):
    local, _ = server
    with Client(local.urls[protocol], "demo") as client:
        for kw, named in [({"exit": "exit9"}, "parameter 'exit': unknown exit 'exit9'"),
                          ({"th_img": 1.5}, "parameter 'th_img'"), ({"th_pix": "0.1,0.2"}, "parameter 'th_pix'")]:
            with pytest.raises(ServerError, match=named):
                client.infer(scenes[:1], **kw)
        with pytest.raises(ServerError, match=r"input 'encoded'\[0\]"):
            client.infer(encoded=[b"not a png"])
        with pytest.raises(ServerError, match="images"):  # Triton checks the declared shape itself
            client.infer(scenes[:1, :16])
        with pytest.raises(ServerError):  # more than max_batch_size: Triton refuses it
            client.infer(np.repeat(scenes[:1], 9, axis=0))
        assert len(client.infer(scenes[:2])) == 2
    with Client(local.urls[protocol], "demo-static") as client:
        with pytest.raises(ServerError, match="5 images in one request, more than the 4 this model takes"):
            client.infer(np.repeat(scenes[:1], 5, axis=0))
        assert len(client.infer(scenes[:3])) == 3


@pytest.mark.parametrize("model", MODELS)
def test_the_readmes_check_command_works(server, model):
    local, _ = server
    res = subprocess.run([sys.executable, "-m", "mesc.cli", "client", local.urls["grpc"], "--model", model],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(grey test image): exit exit" in res.stdout


def test_sigterm_stops_it_leaving_no_process(server):
    local, _ = server
    local.proc.send_signal(signal.SIGTERM)  # to tritonserver alone: its stubs must go with it
    assert local.proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 20
    while session_processes(local.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(local.proc.pid) == []
