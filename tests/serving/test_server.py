"""The server's parts that need no running Triton: names, the libpython preload, startup lines,
client helpers."""

import sysconfig
import types

import pytest

from mesc.errors import MescError
from mesc.serving import libpython
from mesc.serving.client import server_message, split_url
from mesc.serving.server import ServeOptions, describe, model_name


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
