"""The server's parts that need no running Triton: names, the libpython preload, startup lines,
client helpers."""

import socket
import sysconfig
import types

import numpy as np
import pytest
from click.testing import CliRunner

from mesc.cli import cli
from mesc.errors import MescError
from mesc.serving import libpython
from mesc.serving.client import server_message, split_url
from mesc.serving.local import free_ports
from mesc.serving import server
from mesc.serving.server import ServeOptions, describe, model_name, serve


def test_model_name_from_the_folder_and_checked(tmp_path):
    assert model_name(tmp_path / "demo") == "demo"
    assert model_name(tmp_path / "x", "cams-1.v2") == "cams-1.v2"
    with pytest.raises(MescError, match="--name"):
        model_name(tmp_path / "my pkg")


def test_preload_puts_this_interpreters_libpython_first(monkeypatch, tmp_path):
    lib = tmp_path / "libpython3.11.so.1.0"
    lib.write_bytes(b"")
    values = {"LIBDIR": str(tmp_path), "LDLIBRARY": lib.name}
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: values.get(k))
    env = libpython.preload_env({"LD_PRELOAD": f"/x/other.so:{lib}"})
    assert env["LD_PRELOAD"] == f"{lib}:/x/other.so"


def test_no_shared_libpython_is_explained(monkeypatch):
    values = {"LIBDIR": "/usr/lib", "LDLIBRARY": "libpython3.11.a"}
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: values.get(k))
    with pytest.raises(MescError, match="no shared libpython.*--enable-shared"):
        libpython.preload_env({})


def _pipe(dynamic):
    return types.SimpleNamespace(chw=(3, 32, 64), dynamic_batch=dynamic, static_batch=None if dynamic else 1,
                                 exit_names=["exit0", "exit1"], runner=types.SimpleNamespace(backend="onnxruntime",
                                                                                            device="cpu"))


def test_startup_lines_name_the_endpoints_and_the_static_batch():
    opts = ServeOptions(http_port=9000, grpc_port=9001, metrics_port=9002)
    lines = "\n".join(describe("demo", "out/demo", _pipe(True), opts))
    assert "http://127.0.0.1:9000/v2/models/demo/infer" in lines and "grpc://127.0.0.1:9001" in lines
    assert "http://127.0.0.1:9002/metrics" in lines and "images that exit leave the batch" in lines
    static = "\n".join(describe("demo", "out/demo", _pipe(False), opts))
    assert "static batch of 1" in static and "--dynamic-batch" in static


def test_client_urls_and_server_messages():
    assert split_url("grpc://h:8001") == ("grpc", "h:8001")
    assert split_url("http://h:8000/") == ("http", "h:8000")
    assert split_url("h:8000") == ("http", "h:8000")
    with pytest.raises(MescError):
        split_url("ftp://h:1")
    tb = "Traceback...\n  raise X\nmesc.serving.requests.RequestError: parameter 'exit': unknown exit '7'\n\nAt:\n"
    assert server_message(Exception(tb)) == "parameter 'exit': unknown exit '7'"


def _listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("ports, named", [
    ({"http_port": 9100, "grpc_port": 9100}, r"--grpc-port 9100 is also the --http-port"),
    ({"metrics_port": 9101, "grpc_port": 9101}, r"--metrics-port 9101 is also the --grpc-port"),
    ({"http_port": 0}, r"--http-port must be a port number from 1 to 65535, got 0"),
    ({"max_batch": 0}, r"--max-batch must be a whole number >= 1, got 0"),
    ({"instances": -3}, r"--instances must be a whole number >= 1, got -3"),
])
def test_serve_refuses_shared_or_invalid_ports_before_loading_anything(tmp_path, ports, named):
    # the package does not exist: the refusal must come before anything is read or started
    with pytest.raises(MescError, match=named):
        serve(tmp_path / "nope", ServeOptions(address="127.0.0.1", **ports))


def test_serve_refuses_a_port_in_use_in_one_line_before_triton(tmp_path):
    with _listening() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(MescError, match=rf"--grpc-port {port} on 127.0.0.1: already in use"):
            server.check_options(ServeOptions(address="127.0.0.1", http_port=free_ports(1)[0], grpc_port=port,
                                       metrics_port=free_ports(1)[0]))
        # the CLI: one line, status 2, and the package is never looked at
        res = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope"), "--address", "127.0.0.1",
                                       "--http-port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"mesc: error: --http-port {port} on 127.0.0.1: already in use" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_free_ports_pass():
    http, grpc, metrics = free_ports(3)
    server.check_options(ServeOptions(address="127.0.0.1", http_port=http, grpc_port=grpc, metrics_port=metrics))


class _FakeTritonClient:
    """What Client.infer touches of tritonclient, refusing a dtype the way tritonclient does
    (with its own exception, not mesc's)."""

    class InferInput:
        def __init__(self, name, shape, datatype):
            self.datatype = datatype

        def set_data_from_numpy(self, data):
            if self.datatype == "UINT8" and data.dtype != np.uint8:
                raise RuntimeError(f"got unexpected datatype {data.dtype} from numpy array, expected UINT8")


@pytest.mark.parametrize("kw, named", [
    ({"images": np.zeros((1, 8, 8, 3), np.float32)}, r"images: expected a uint8 N x H x W x C array, got float32"),
    ({"images": np.zeros((8, 8, 3), np.uint8)}, r"images: expected a uint8 N x H x W x C array, got uint8 \(8, 8, 3\)"),
    ({"encoded": b"\x89PNG"}, r"encoded: expected a list of PNG/JPEG files as bytes, got bytes"),
    ({"encoded": ["scene.png"]}, r"encoded: .*item 0 is str"),
])
def test_client_refuses_a_wrong_dtype_with_mescs_own_error(kw, named):
    from mesc.serving.client import Client

    client = Client.__new__(Client)
    client._tc, client.protocol, client.model = _FakeTritonClient, "http", "demo"
    with pytest.raises(MescError, match=named):
        client.infer(**kw)
