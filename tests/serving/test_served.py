"""The real server: `mesc serve` (PyTriton's bundled Triton) on free loopback ports, asked over
HTTP and gRPC with tritonclient, answers as `mesc.load(...)` does in process; bad requests get
errors naming the input while it keeps serving; SIGTERM leaves no process behind.
`make test` runs this file in .venv-serve (see conftest.py)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed here (it pins numpy<2): "
                                       "make test runs this file in .venv-serve")
pytest.importorskip("tritonclient", reason="tritonclient is not installed here: make test runs this file in .venv-serve")

import mesc  # noqa: E402
from mesc.serving.client import Client, ServerError  # noqa: E402
from mesc.serving.local import ServerDidNotStart, session_processes, start_local  # noqa: E402

@pytest.fixture(scope="module")
def package(demo_dynamic):
    return demo_dynamic


@pytest.fixture(scope="module")
def server(package):
    log = open(package.parent / "serve.log", "w+")
    local = start_local(package, "--instances", "2", "--max-batch", "8", log=log)
    try:
        local.wait_ready()
    except ServerDidNotStart as err:
        log.seek(0)
        pytest.fail(f"{err}:\n{log.read()[-3000:]}")
    yield local.proc, local.urls, log
    if local.proc.poll() is None:
        os.killpg(local.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def scenes(package):
    rng = np.random.default_rng(0)
    with mesc.load(package) as pipe:
        c, h, w = pipe.chw
    # smooth random fields with a few flat images: some leave early, some go deep
    base = rng.integers(0, 256, (6, h // 8, w // 8, c), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    base[:2] = base[:2, :1, :1]
    return np.ascontiguousarray(base)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_results_match_the_pipeline_in_process(server, package, scenes, protocol):
    _, urls, _ = server
    with mesc.load(package) as pipe:
        want = pipe(scenes)
        want_exit1 = pipe(scenes[:2], exit="exit1")
    with Client(urls[protocol], "demo") as client:
        got = client.infer(scenes)
        budgeted = client.infer(scenes[:2], exit="exit1")
        from PIL import Image
        import io

        files = []
        for im in scenes[:2]:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            files.append(buf.getvalue())
        decoded = client.infer(encoded=files)
    for g, w in zip(got + budgeted + decoded, want + want_exit1 + want[:2]):
        np.testing.assert_array_equal(g.labels, w.labels)
        assert (g.exit, g.exit_name) == (w.exit_index, w.exit)
        for k, name in enumerate(pipe.exit_names):
            c = w.confidences.get(name)
            assert np.isnan(g.confidences[k]) if c is None else g.confidences[k] == pytest.approx(c, rel=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_are_named_and_the_server_keeps_answering(server, scenes, protocol):
    _, urls, _ = server
    with Client(urls[protocol], "demo") as client:
        for kw, named in [({"exit": "exit9"}, "parameter 'exit'"), ({"th_img": 1.5}, "parameter 'th_img'"),
                          ({"th_pix": "0.1,0.2"}, "parameter 'th_pix'")]:
            with pytest.raises(ServerError, match=named):
                client.infer(scenes[:1], **kw)
        with pytest.raises(ServerError, match=r"input 'encoded'\[0\]"):
            client.infer(encoded=[b"not a png"])
        with pytest.raises(ServerError, match="images"):  # Triton checks the declared shape itself
            client.infer(scenes[:1, :16])
        assert len(client.infer(scenes[:2])) == 2


def test_cli_client_smoke_test(server):
    _, urls, _ = server
    res = subprocess.run([sys.executable, "-m", "mesc.cli", "client", urls["grpc"], "--model", "demo"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(grey test image): exit exit" in res.stdout


def test_sigterm_stops_cleanly_leaving_no_process(server):
    proc, urls, log = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 20
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(proc.pid) == []
    log.seek(0)
    assert "mesc serve: stopping" in log.read()
